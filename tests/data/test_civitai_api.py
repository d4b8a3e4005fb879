"""CivitAI client against a loopback server in the API's shape: paging, 429/500 retries, bad pages, resume."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from flowrl.data.civitai_api import CivitaiClient, CivitaiError, fetch_prompts, next_cursor


def _page(start, n, next_cursor):
    items = [{"id": i, "meta": {"prompt": f"prompt {i}", "negativePrompt": "blurry"}} for i in range(start, start + n)]
    items.append({"id": start + n, "meta": None})  # images without metadata are common
    meta = {"nextCursor": next_cursor} if next_cursor else {}
    return {"items": items, "metadata": meta}


class Api:
    """Scripted server: PAGES maps cursor -> page; `faults` maps cursor -> list of faults to serve first."""

    def __init__(self):
        self.pages = {None: _page(0, 3, "c1"), "c1": _page(10, 3, "c2"), "c2": _page(20, 2, None)}
        self.faults: dict = {}
        self.requests: list[dict] = []

    def handle(self, handler):
        query = {k: v[0] for k, v in parse_qs(urlparse(handler.path).query).items()}
        self.requests.append(
            {"path": urlparse(handler.path).path, "query": query, "auth": handler.headers.get("Authorization")}
        )
        cursor = query.get("cursor")
        fault = self.faults.get(cursor, []).pop(0) if self.faults.get(cursor) else None
        if fault == 429:
            return 429, {"Retry-After": "0"}, b"slow down"
        if fault == 500:
            return 500, {}, b"oops"
        if fault == 401:
            return 401, {}, b"unauthorized"
        if fault == "bad_json":
            return 200, {}, b'{"items": [{"id": 1, "me'
        return 200, {}, json.dumps(self.pages[cursor]).encode()


@pytest.fixture
def api():
    state = Api()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = state.handle(self)
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    yield state
    server.shutdown()
    server.server_close()


def _client(api, **kw):
    kw = {"page_size": 3, "backoff_s": 0.0, "max_retries": 3, **kw}
    return CivitaiClient(base_url=api.url, **kw)


def test_pages_until_last(api, monkeypatch):
    monkeypatch.setenv("CIVITAI_API_KEY", "secret")
    result = fetch_prompts(_client(api), max_items=100, max_pages=10)
    assert [r["prompt"] for r in result.rows] == [f"prompt {i}" for i in (0, 1, 2, 10, 11, 12, 20, 21)]
    assert result.rows[0] == {"prompt": "prompt 0", "negative_prompt": "blurry", "source": "civitai:image-0"}
    assert result.exhausted and result.n_pages == 3 and result.n_items_without_prompt == 3
    assert [r["query"].get("cursor") for r in api.requests] == [None, "c1", "c2"]
    first = api.requests[0]
    assert first["path"] == "/api/v1/images" and first["query"]["limit"] == "3" and first["query"]["nsfw"] == "None"
    assert first["auth"] == "Bearer secret"


def test_no_key_no_auth_header(api, monkeypatch):
    monkeypatch.delenv("CIVITAI_API_KEY", raising=False)
    fetch_prompts(_client(api), max_items=1, max_pages=1)
    assert api.requests[0]["auth"] is None


def test_stops_at_max_items_and_pages(api):
    assert fetch_prompts(_client(api), max_items=2, max_pages=10).n_pages == 1
    assert len(fetch_prompts(_client(api), max_items=100, max_pages=2).rows) == 6


def test_429_with_retry_after_and_500_are_retried(api):
    api.faults = {"c1": [429, 500]}
    waits = []
    result = fetch_prompts(_client(api, sleep=waits.append), max_items=100, max_pages=10)
    assert len(result.rows) == 8 and result.n_retries == 2
    assert waits[0] == 0.0  # Retry-After: 0 honoured
    assert len(api.requests) == 5


def test_backoff_grows_with_jitter():
    waits = []
    client = CivitaiClient(base_url="http://127.0.0.1:9", backoff_s=1.0, sleep=waits.append)
    for attempt in range(3):
        client._wait(attempt)
    assert 1 <= waits[0] < 2 and 2 <= waits[1] < 4 and 4 <= waits[2] < 8


def test_malformed_page_retried_then_recovers(api):
    api.faults = {"c2": ["bad_json"]}
    result = fetch_prompts(_client(api), max_items=100, max_pages=10)
    assert len(result.rows) == 8 and result.n_retries == 1


def test_persistent_failure_is_a_clear_error(api):
    api.faults = {"c1": ["bad_json"] * 10}
    with pytest.raises(CivitaiError, match=r"cursor 'c1'.*not valid JSON .* after 3 retries"):
        fetch_prompts(_client(api), max_items=100, max_pages=10)
    api.faults = {None: [500] * 10}
    with pytest.raises(CivitaiError, match="HTTP 500 after 3 retries"):
        fetch_prompts(_client(api), max_items=100, max_pages=10)


def test_auth_refused_is_not_retried(api):
    api.faults = {None: [401, 401]}
    with pytest.raises(CivitaiError, match="HTTP 401; set CIVITAI_API_KEY"):
        fetch_prompts(_client(api), max_items=10, max_pages=10)
    assert len(api.requests) == 1


def test_network_errors_retried_then_reported():
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = CivitaiClient(base_url=f"http://127.0.0.1:{port}", max_retries=2, backoff_s=0.0, timeout_s=2.0)
    with pytest.raises(CivitaiError, match="network error.*after 2 retries"):
        fetch_prompts(client, max_items=10, max_pages=10)
    assert client.n_retries == 2


def test_resume_from_cache(api, tmp_path):
    cache = tmp_path / "cache" / "civitai.jsonl"
    api.faults = {"c2": [500] * 10}
    with pytest.raises(CivitaiError):
        fetch_prompts(_client(api), max_items=100, max_pages=10, cache_path=cache)
    assert len(cache.read_text().splitlines()) == 2  # the two pages fetched before the failure
    with cache.open("a") as fh:
        fh.write('{"cursor": "c2", "items": [')  # torn line from an interrupted write
    api.faults, api.requests = {}, []
    result = fetch_prompts(_client(api), max_items=100, max_pages=10, cache_path=cache)
    assert [r["query"].get("cursor") for r in api.requests] == ["c2"]
    assert len(result.rows) == 8 and result.n_pages_cached == 2 and result.exhausted
    api.requests = []
    again = fetch_prompts(_client(api), max_items=100, max_pages=10, cache_path=cache)
    assert api.requests == [] and again.rows == result.rows


def test_next_cursor_from_next_page_url():
    assert (
        next_cursor({"metadata": {"nextPage": "https://civitai.com/api/v1/images?limit=3&cursor=abc%7C1"}}) == "abc|1"
    )
    assert next_cursor({"metadata": {"nextCursor": 17}}) == "17"
    assert next_cursor({"metadata": {}}) is None


def test_stage_with_civitai_source(api, tmp_path):
    from flowrl.data.prompts import run
    from flowrl.io import read_jsonl
    from flowrl.params.model import Params

    params = Params.model_validate(
        {
            "seed": 3,
            "prompts": {
                "source": "civitai",
                "n_prompts": 8,
                "n_holdout": 2,
                "min_chars": 5,
                "civitai_base_url": api.url,
                "civitai_page_size": 3,
                "civitai_backoff_s": 0.0,
                "civitai_cache": "cache/civitai.jsonl",
            },
        }
    )
    api.faults = {"c1": [429]}
    metrics = run(params, tmp_path)
    assert metrics["n_api_pages"] == 3 and metrics["n_api_retries"] == 1 and metrics["n_api_items_without_prompt"] == 3
    assert metrics["n_train"] == 6 and metrics["n_holdout"] == 2
    rows = read_jsonl(tmp_path / "data/prompts/train.jsonl") + read_jsonl(tmp_path / "data/prompts/holdout.jsonl")
    assert sorted(r["source"] for r in rows) == sorted(f"civitai:image-{i}" for i in (0, 1, 2, 10, 11, 12, 20, 21))
    assert (tmp_path / "cache/civitai.jsonl").exists()
