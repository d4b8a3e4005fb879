"""HTTP client for a ComfyUI server: submit an API graph, wait for its outputs, fetch the image bytes."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flowrl.errors import FlowRLError

if TYPE_CHECKING:
    import httpx


class ComfyUIError(FlowRLError):
    """The ComfyUI server refused a graph, failed, timed out or could not be reached."""


def check_server_url(url: str, setting: str = "scoring.options.url") -> str:
    """`url` without a trailing slash when it is an http(s)://host[:port][/path] URL; else an error naming `setting`
    and what is wrong (scheme, host, port, spaces, query)."""
    example = "as in http://127.0.0.1:8188"
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ComfyUIError(f"ComfyUI url {url!r} cannot be read ({exc}); give one {example}; fix {setting}") from None
    if parts.scheme not in ("http", "https"):
        why = "is empty" if not url.strip() else "must start with http:// or https://"
        raise ComfyUIError(f"ComfyUI url {url!r} {why}, {example}; fix {setting}")
    if any(c.isspace() for c in url):
        raise ComfyUIError(f"ComfyUI url {url!r} holds a space or line break; give one {example}; fix {setting}")
    if not parts.hostname:
        raise ComfyUIError(f"ComfyUI url {url!r} names no host after {parts.scheme}://, {example}; fix {setting}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port <= 65535:
        given = parts.netloc.rpartition(":")[2]
        raise ComfyUIError(
            f"ComfyUI url {url!r}: port {given!r} is not a port number from 1 to 65535 "
            f"(ComfyUI listens on 8188 unless started with --port); fix {setting}"
        )
    if parts.query or parts.fragment:
        raise ComfyUIError(
            f"ComfyUI url {url!r} has a query or fragment (?/#); give the server's base URL, {example}; fix {setting}"
        )
    return url.rstrip("/")


class ComfyUIClient:
    """Talks to one ComfyUI server (`POST /prompt`, `GET /history/<id>`, `GET /view`).

    Args:
        url: server base URL, e.g. "http://127.0.0.1:8188".
        timeout: seconds for one HTTP request and, in `wait`, for a whole render.
        retries: extra attempts after a connection error, timeout or 5xx answer.
        backoff: first wait between attempts in seconds (doubles each time).
        poll_interval: seconds between /history polls.
        setting: where the URL came from, named in errors (a params key or a CLI option).
    """

    def __init__(
        self,
        url: str,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 1.0,
        poll_interval: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        setting: str = "scoring.options.url",
    ) -> None:
        url = check_server_url(url, setting)
        if timeout <= 0 or retries < 0 or backoff < 0 or poll_interval <= 0:
            raise ComfyUIError("ComfyUI client: timeout and poll_interval must be > 0, retries and backoff >= 0")
        self.setting = setting
        self.url, self.timeout, self.retries, self.backoff, self.poll_interval = (
            url.rstrip("/"),
            timeout,
            retries,
            backoff,
            poll_interval,
        )
        self.client_id = uuid.uuid4().hex
        import httpx  # 0.1-0.2 s: only once a server is talked to, not for checking a URL

        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One request with retries and exponential backoff on connection errors, timeouts and 5xx."""
        import httpx

        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TimeoutException:
                last = f"timed out after {self.timeout:g} s"
                continue
            except httpx.TransportError as exc:
                last = f"cannot connect ({exc})"
                continue
            if response.status_code >= 500:
                last = f"server error {response.status_code}: {response.text[:300]}"
                continue
            if response.status_code >= 400:
                raise ComfyUIError(
                    f"ComfyUI {method} {self.url}{path}: refused ({response.status_code}): {response.text[:500]}"
                )
            return response
        raise ComfyUIError(
            f"ComfyUI {method} {self.url}{path}: {last} after {self.retries + 1} attempts; "
            f"check that the server runs at {self.setting}, or raise timeout/retries"
        )

    def submit(self, graph: dict) -> str:
        """POST the API graph to /prompt; returns its prompt_id."""
        data = self._request("POST", "/prompt", json={"prompt": graph, "client_id": self.client_id}).json()
        if "prompt_id" not in data:
            raise ComfyUIError(f"ComfyUI POST /prompt: no prompt_id in answer {str(data)[:300]}")
        return str(data["prompt_id"])

    def wait(self, prompt_id: str) -> dict:
        """Poll /history/<id> until the prompt has outputs; returns its outputs {node_id: {"images": [...]}}."""
        deadline = time.monotonic() + self.timeout
        while True:
            entry = self._request("GET", f"/history/{prompt_id}").json().get(prompt_id)
            if entry:
                status = entry.get("status", {})
                if status.get("status_str") == "error":
                    raise ComfyUIError(f"ComfyUI prompt {prompt_id} failed: {str(status.get('messages'))[:500]}")
                if entry.get("outputs"):
                    return entry["outputs"]
            if time.monotonic() > deadline:
                raise ComfyUIError(
                    f"ComfyUI prompt {prompt_id}: no outputs after {self.timeout:g} s; raise scoring.options.timeout"
                )
            time.sleep(self.poll_interval)

    def image(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        """GET /view for one output image's bytes."""
        params = {"filename": filename, "subfolder": subfolder, "type": kind}
        return self._request("GET", "/view", params=params).content

    def render(self, graph: dict) -> bytes:
        """Submit `graph`, wait, and return the bytes of its first output image."""
        prompt_id = self.submit(graph)
        for _node_id, output in sorted(self.wait(prompt_id).items()):
            for img in output.get("images", []):
                return self.image(img["filename"], img.get("subfolder", ""), img.get("type", "output"))
        raise ComfyUIError(
            f"ComfyUI prompt {prompt_id}: finished without an image output; the flow needs a SaveImage node"
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()
