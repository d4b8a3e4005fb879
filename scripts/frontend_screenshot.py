"""Load an exported UI workflow in the official ComfyUI frontend (headless Chromium) and save a screenshot.

The frontend is PyPI `comfyui-frontend-package` (its `static/` folder); the ComfyUI API it calls is a
small loopback stub (object_info from a file, empty settings/users/extensions, 404 for the websocket);
one extension served by the stub loads the workflow and fits it in the window. The workflow's model
files are added to the given /object_info, so the editor shows the graph without missing-model warnings. Needs `chromium`
(Debian package) and the frontend package (pip download comfyui-frontend-package; unzip the wheel).

    python scripts/frontend_screenshot.py WORKFLOW_UI.json OBJECT_INFO.json STATIC_DIR OUT.png
"""

from __future__ import annotations

import json
import mimetypes
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WINDOW = "2700,1100"
CHROMIUM_TIMEOUT_S = 120
LOADER = b"""import { app } from "/scripts/app.js";
app.registerExtension({ name: "flowrl.load", async setup() {
  await app.loadGraphData(await (await fetch("/flowrl/workflow.json")).json());
  const ns = app.graph._nodes, m = 40;  // fit the whole graph (what "Fit view" does), below the toolbar
  const x0 = Math.min(...ns.map(n => n.pos[0])), y0 = Math.min(...ns.map(n => n.pos[1] - 30));
  const x1 = Math.max(...ns.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...ns.map(n => n.pos[1] + n.size[1]));
  const c = app.canvas.canvas, r = devicePixelRatio;
  const s = Math.min((c.width / r - 80) / (x1 - x0 + 2 * m), (c.height / r - 90) / (y1 - y0 + 2 * m));
  app.canvas.ds.scale = s; app.canvas.ds.offset = [-x0 + m + 70 / s, -y0 + m + 70 / s];
  app.canvas.setDirty(true, true);
}});
"""
SYSTEM_STATS = {
    "system": {
        "os": "posix",
        "python_version": "3.11",
        "embedded_python": False,
        "comfyui_version": "stub",
        "pytorch_version": "stub",
        "argv": [],
        "ram_total": 0,
        "ram_free": 0,
    },
    "devices": [],
}
SETTINGS = {"Comfy.TutorialCompleted": True}


def serve(static: Path, object_info: bytes, workflow: bytes) -> ThreadingHTTPServer:
    """Start the frontend + API stub on 127.0.0.1 (a free port) in a daemon thread."""
    answers = {
        "/api/object_info": object_info,
        "/flowrl/workflow.json": workflow,
        "/api/users": json.dumps({"storage": "server", "migrated": True}).encode(),
        "/api/settings": json.dumps(SETTINGS).encode(),
        "/api/extensions": b'["/flowrl/load.js"]',
        "/api/system_stats": json.dumps(SYSTEM_STATS).encode(),
        "/api/embeddings": b"[]",
        "/api/experiment/models": b"[]",
        "/api/userdata": b"[]",
        "/templates/index.json": b"[]",
    }
    root = static.resolve()

    class Handler(BaseHTTPRequestHandler):
        timeout = 10

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server API)
            path = self.path.split("?")[0]
            if path in answers:
                return self._send(200, answers[path])
            if path == "/flowrl/load.js":
                return self._send(200, LOADER, "text/javascript")
            if path.startswith("/api/userdata/") or path == "/ws":
                return self._send(404, b"")
            if path.startswith("/api/"):
                return self._send(200, b"{}")
            file = (root / (path.lstrip("/") or "index.html")).resolve()
            if root in file.parents and file.is_file():
                return self._send(
                    200, file.read_bytes(), mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                )
            return self._send(404, b"")

        def do_POST(self):  # noqa: N802
            self._send(200, b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def with_workflow_files(object_info: dict, ui: dict) -> dict:
    """`object_info` with the workflow's combo values (model files) added, so the editor shows no missing-model warning."""
    from flowrl.comfy.ui import ui_to_api

    for node in ui_to_api(ui).values():
        required = object_info.get(node["class_type"], {}).get("input", {}).get("required", {})
        for name, value in node["inputs"].items():
            if name in required and isinstance(required[name][0], list) and value not in required[name][0]:
                required[name][0].append(value)
    return object_info


def main(workflow: Path, object_info: Path, static: Path, out: Path) -> None:
    info = with_workflow_files(json.loads(object_info.read_text()), json.loads(workflow.read_text()))
    server = serve(static, json.dumps(info).encode(), workflow.read_bytes())
    try:
        subprocess.run(
            [
                "chromium",
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--window-size={WINDOW}",
                "--virtual-time-budget=30000",
                f"--screenshot={out}",
                f"http://127.0.0.1:{server.server_address[1]}/",
            ],
            check=True,
            timeout=CHROMIUM_TIMEOUT_S,
            capture_output=True,
        )
    finally:
        server.shutdown()
        server.server_close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:5]))
