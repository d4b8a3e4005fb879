"""`python -m flows.local_server CMD ...`: run CMD (e.g. `dvc repro`) against one local Prefect server.

Without `PREFECT_API_URL`, every `python -m flows STAGE` process starts a temporary Prefect API of its
own: ~8 s per stage on a 2-core machine (measured 9.0 s against 1.2-1.6 s for a flow run on a running
server). This starts `prefect server start` once on a free 127.0.0.1 port, runs CMD with
`PREFECT_API_URL` pointing at it (the stage runs land in the same Prefect database the temporary
servers use, `PREFECT_HOME`), and stops the server when CMD ends. With `PREFECT_API_URL` already set
(your own server), CMD runs as it is. `make pipeline` goes through here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFECT = str(Path(sys.executable).with_name("prefect"))
START_TIMEOUT_S = 180


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(api_url: str) -> bool:
    """Whether the Prefect API at `api_url` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session, waiting a bounded time."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def local_prefect_server(home: Path | None = None, timeout_s: float = START_TIMEOUT_S) -> Iterator[dict[str, str]]:
    """Start `prefect server start` on a free port; yield the environment that points Prefect at it.

    Args:
        home: PREFECT_HOME for the server (its database); None = the one in force (~/.prefect by default).
        timeout_s: how long to wait for the health check.
    Raises:
        RuntimeError: the server exited or did not answer in time (its log tail is in the message).
    """
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": os.environ.get("PREFECT_UI_ENABLED", "false"),
        "PREFECT_CLI_PROMPT": "false",
    }
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    with tempfile.TemporaryFile("w+") as log:
        try:
            proc = subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise RuntimeError(f"cannot run {PREFECT}: {exc}") from exc
        try:
            deadline = time.monotonic() + timeout_s
            while not healthy(env["PREFECT_API_URL"]):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(
                        f"the local Prefect server did not start (exit {proc.poll()}):\n{log.read()[-3000:]}"
                    )
                time.sleep(0.5)
            yield env
        finally:
            stop(proc)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if os.environ.get("PREFECT_API_URL"):
        return subprocess.call(argv)
    try:
        with local_prefect_server() as env:
            print(f"flows.local_server: Prefect API {env['PREFECT_API_URL']} for this run", file=sys.stderr, flush=True)
            return subprocess.call(argv, env=env)
    except RuntimeError as exc:
        print(
            f"flows.local_server: {exc}\nrunning without it (each stage starts a temporary Prefect API)",
            file=sys.stderr,
        )
        return subprocess.call(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
