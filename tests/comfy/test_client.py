"""ComfyUI client and ComfyUIScorer against a fake ComfyUI server on 127.0.0.1 (http.server in a thread)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from flowrl.comfy.client import ComfyUIClient, ComfyUIError
from flowrl.scoring.comfyui import ComfyUIScorer
from tests.scoring.graphs import simple_flow

IMAGE = b"\x89PNG fake image bytes"


class FakeComfy(BaseHTTPRequestHandler):
    """Answers /prompt, /history/<id>, /view like ComfyUI; `server.script` injects failures."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def _json(self, code: int, data) -> None:
        body = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        s = self.server
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        s.calls.append("POST /prompt")
        if s.script.get("post_errors", 0) > 0:
            s.script["post_errors"] -= 1
            return self._json(500, {"error": "out of memory"})
        if s.script.get("refuse"):
            return self._json(400, {"error": "invalid prompt", "node_errors": {"5": "bad sampler"}})
        s.submitted.append(payload["prompt"])
        self._json(200, {"prompt_id": f"p{len(s.submitted)}", "number": 0})

    def do_GET(self):
        s = self.server
        url = urlparse(self.path)
        s.calls.append(f"GET {url.path}")
        if url.path.startswith("/history/"):
            if s.script.get("hang"):
                time.sleep(s.script["hang"])
            pid = url.path.rsplit("/", 1)[1]
            s.polls[pid] = s.polls.get(pid, 0) + 1
            if s.polls[pid] < 2:  # still running on the first poll
                return self._json(200, {})
            outputs = {"7": {"images": [{"filename": f"{pid}.png", "subfolder": "flowrl", "type": "output"}]}}
            return self._json(200, {pid: {"outputs": outputs, "status": {"status_str": "success", "completed": True}}})
        if url.path == "/view":
            q = parse_qs(url.query)
            s.views.append((q["filename"][0], q["subfolder"][0], q["type"][0]))
            body = IMAGE + q["filename"][0].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self._json(404, {})


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeComfy)
    srv.script, srv.calls, srv.submitted, srv.polls, srv.views = {}, [], [], {}, []
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def _image_scorer(image: bytes, prompt: str) -> float:
    """Stands in for HPSv2: depends on both the image bytes and the prompt."""
    return len(image) / 100 + len(prompt) / 1000


def test_full_exchange_scores_filled_prompt(server):
    scorer = ComfyUIScorer(_url(server), timeout=5, retries=0, image_scorer=_image_scorer, poll_interval=0.01)
    scores = scorer.score(["a red fox", "a castle"], [simple_flow(), simple_flow(steps=30)])
    assert scores == [_image_scorer(IMAGE + b"p1.png", "a red fox"), _image_scorer(IMAGE + b"p2.png", "a castle")]
    assert server.submitted[0]["2"]["inputs"]["text"] == "a red fox"  # placeholder filled
    assert server.submitted[1]["5"]["inputs"]["steps"] == 30
    assert server.views == [("p1.png", "flowrl", "output"), ("p2.png", "flowrl", "output")]
    assert server.calls[:4] == ["POST /prompt", "GET /history/p1", "GET /history/p1", "GET /view"]


def test_server_error_is_retried_then_succeeds(server):
    server.script["post_errors"] = 2
    client = ComfyUIClient(_url(server), timeout=5, retries=2, backoff=0.01, poll_interval=0.01)
    assert client.render(simple_flow()).startswith(IMAGE)
    assert server.calls.count("POST /prompt") == 3


def test_server_error_exhausts_retries(server):
    server.script["post_errors"] = 5
    client = ComfyUIClient(_url(server), timeout=5, retries=1, backoff=0.01)
    with pytest.raises(ComfyUIError, match="server error 500.*after 2 attempts"):
        client.submit(simple_flow())


def test_refused_graph_is_not_retried(server):
    server.script["refuse"] = True
    with pytest.raises(ComfyUIError, match="refused \\(400\\).*bad sampler"):
        ComfyUIClient(_url(server), timeout=5, retries=3, backoff=0.01).submit(simple_flow())
    assert server.calls.count("POST /prompt") == 1


def test_timeout(server):
    server.script["hang"] = 1.0
    client = ComfyUIClient(_url(server), timeout=0.2, retries=1, backoff=0.01, poll_interval=0.01)
    pid = client.submit(simple_flow())
    with pytest.raises(ComfyUIError, match="timed out after 0.2 s after 2 attempts"):
        client.wait(pid)


def test_unreachable_server_and_bad_url():
    with pytest.raises(ComfyUIError, match="cannot connect"):
        ComfyUIClient("http://127.0.0.1:9", timeout=1, retries=0).submit(simple_flow())
    with pytest.raises(ComfyUIError, match="must start with http"):
        ComfyUIClient("127.0.0.1:8188")


def test_missing_hpsv2_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_hps(name, *args, **kwargs):
        if name == "hpsv2":
            raise ImportError("No module named 'hpsv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hps)
    from flowrl.scoring.base import ScorerError

    with pytest.raises(ScorerError, match=r"pip install flowrl\[hps\]"):
        ComfyUIScorer("http://127.0.0.1:8188")
