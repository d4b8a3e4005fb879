"""A loopback-only stand-in for a ComfyUI server: GET /object_info (a recorded answer) and POST /prompt validation.

POST /prompt answers as ComfyUI does: 200 {"prompt_id", "number", "node_errors": {}} for a graph that
validates against the recorded /object_info, else 400 {"error": {...}, "node_errors": {node id: {...}}}.
Bounded: requests over MAX_BODY bytes are refused, each connection times out, the server stops with its
context manager.
"""

from __future__ import annotations

import json
import threading
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from flowrl.comfy.object_info import Missing, ObjectInfo, check_installed

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "object_info_user.json"
MAX_BODY = 2 * 2**20


def _node_errors(graph: dict, info: ObjectInfo) -> dict:
    missing, problems = check_installed(graph, info)
    errors: dict[str, dict] = {}
    for item in [*missing, *problems]:
        nid = str(item.node_id)
        entry = errors.setdefault(
            nid, {"errors": [], "dependent_outputs": [], "class_type": graph.get(nid, {}).get("class_type")}
        )
        kind = (
            ("value_not_in_list" if item.input else "node_not_found") if isinstance(item, Missing) else "invalid_input"
        )
        entry["errors"].append(
            {"type": kind, "message": str(item), "details": str(item), "extra_info": {"input_name": item.input}}
        )
    return errors


@contextmanager
def comfy_stub(object_info: dict | None = None):
    """Yield the base URL of a stub ComfyUI on 127.0.0.1 (a free port); records POSTed graphs in `server.prompts`."""
    raw = object_info if object_info is not None else json.loads(FIXTURE.read_text())
    info = ObjectInfo.from_dict(raw, "stub")
    body_info = json.dumps(raw).encode()
    prompts: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        timeout = 10

        def _send(self, code: int, payload: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):  # noqa: N802 (http.server API)
            if self.path.rstrip("/") == "/object_info":
                self._send(200, body_info)
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/prompt" or length > MAX_BODY:
                self._send(404 if self.path != "/prompt" else 413, b"{}")
                return
            try:
                graph = json.loads(self.rfile.read(length))["prompt"]
            except (ValueError, KeyError, TypeError):
                self._send(400, json.dumps({"error": {"type": "invalid_prompt", "message": "no prompt"}}).encode())
                return
            errors = _node_errors(graph, info)
            if errors:
                self._send(
                    400,
                    json.dumps(
                        {
                            "error": {
                                "type": "prompt_outputs_failed_validation",
                                "message": "Prompt outputs failed validation",
                            },
                            "node_errors": errors,
                        }
                    ).encode(),
                )
                return
            prompts.append(graph)
            self._send(
                200, json.dumps({"prompt_id": uuid.uuid4().hex, "number": len(prompts), "node_errors": {}}).encode()
            )

        def log_message(self, *args):  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.prompts = prompts
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
