"""Loopback stub ComfyUI servers that render: POST /prompt, GET /history/<id>, GET /view (a small PNG after a delay).

Bounded: 127.0.0.1 only, a per-connection timeout, request bodies over MAX_BODY refused, stopped by the context
manager. Modes: "ok"; "errors" (every POST /prompt answers 500); `die_after=n` (the server stops listening once
it has accepted n prompts, dropping the renders it holds). Each server records what it rendered and the most
renders it held at once.
"""

from __future__ import annotations

import json
import struct
import threading
import time
import zlib
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

MAX_BODY = 2**20


def tiny_png(text: str) -> bytes:
    """A valid 1x1 grey PNG carrying `text` in a tEXt chunk (so a test can tell which render it came from)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"tEXt", b"prompt\0" + text.encode())
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


def prompt_text(graph: dict) -> str:
    """The first CLIPTextEncode text of an API graph (the filled prompt in tests.scoring.graphs.simple_flow)."""
    return graph["2"]["inputs"]["text"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay: float, mode: str, die_after: int | None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay, self.mode, self.die_after = delay, mode, die_after
        self.lock = threading.Lock()
        self.jobs: dict[str, tuple[str, float]] = {}  # prompt_id -> (prompt text, submitted at)
        self.active: set[str] = set()
        self.max_active = 0
        self.rendered: list[str] = []  # prompt texts whose image was fetched
        self.posts = 0
        self.dead = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up on a dying server: nothing to report

    def die(self) -> None:
        self.dead = True
        threading.Thread(target=lambda: (self.shutdown(), self.server_close()), daemon=True).start()


class _Handler(BaseHTTPRequestHandler):
    timeout = 10

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 (http.server API)
        s: _Server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        if self.path != "/prompt" or length > MAX_BODY:
            return self._send(404, b"{}")
        graph = json.loads(self.rfile.read(length))["prompt"]
        with s.lock:
            s.posts += 1
            if s.dead:
                self.close_connection = True
                return
            if s.mode == "errors":
                return self._send(500, b'{"error": "CUDA out of memory"}')
            pid = f"{s.server_address[1]}-{s.posts}"
            s.jobs[pid] = (prompt_text(graph), time.monotonic())
            s.active.add(pid)
            s.max_active = max(s.max_active, len(s.active))
            if s.die_after is not None and len(s.jobs) >= s.die_after:
                s.die()
        self._send(200, json.dumps({"prompt_id": pid, "number": s.posts, "node_errors": {}}).encode())

    def do_GET(self):  # noqa: N802
        s: _Server = self.server
        url = urlparse(self.path)
        if s.dead:
            self.close_connection = True
            return
        if url.path.startswith("/history/"):
            pid = url.path.rsplit("/", 1)[1]
            with s.lock:
                job = s.jobs.get(pid)
            if job is None or time.monotonic() - job[1] < s.delay:
                return self._send(200, b"{}")
            outputs = {"7": {"images": [{"filename": f"{pid}.png", "subfolder": "", "type": "output"}]}}
            return self._send(
                200, json.dumps({pid: {"outputs": outputs, "status": {"status_str": "success"}}}).encode()
            )
        if url.path == "/view":
            pid = parse_qs(url.query)["filename"][0].removesuffix(".png")
            with s.lock:
                text = s.jobs[pid][0]
                s.active.discard(pid)
                s.rendered.append(text)
            return self._send(200, tiny_png(text), "image/png")
        self._send(404, b"{}")


@contextmanager
def render_servers(*specs: dict, delay: float = 0.02):
    """Yield stub servers, one per spec ({"mode": "ok"|"errors", "die_after": n}); all stop on exit."""
    with ExitStack() as stack:
        servers = []
        for spec in specs:
            srv = _Server(spec.get("delay", delay), spec.get("mode", "ok"), spec.get("die_after"))
            thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
            thread.start()
            stack.callback(
                lambda srv=srv, thread=thread: (srv.dead or (srv.shutdown(), srv.server_close()), thread.join(5))
            )
            servers.append(srv)
        yield servers
