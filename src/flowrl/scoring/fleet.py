"""A render fleet for the ComfyUI scorer: several servers, bounded renders in flight, retries elsewhere, a score cache.

At about a minute per render, the paper's 100k triplets need many ComfyUI servers. `RenderFleet` spreads renders
over them (at most `in_flight` per server), retries a failed render on another server, stops sending to a server
after `max_failures` failures in a row, and counts renders per minute. `ScoreCache` keeps every score on disk,
keyed by the content hash of (prompt, flow), so a killed `triplets` stage resumes without rendering anything twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from flowrl.comfy.client import ComfyUIClient, ComfyUIError, check_server_url

log = logging.getLogger(__name__)


def load_servers(servers: str | Iterable[str], setting: str = "scoring.options.servers") -> list[str]:
    """Server URLs from a list, or from a text file naming one URL per line (`#` starts a comment).

    Raises:
        ComfyUIError: no servers, a missing file, a malformed URL or a server named twice.
    """
    if isinstance(servers, (str, os.PathLike)):
        path = Path(servers)
        if not path.is_file():
            raise ComfyUIError(
                f"{setting}: {str(servers)!r} is not a file naming servers (one URL a line); "
                "give a list of URLs or an existing file"
            )
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        urls, where = [line for line in lines if line], f"{setting} (file {path})"
    else:
        urls, where = list(servers), setting
    if not urls:
        raise ComfyUIError(f"{where}: no ComfyUI servers named; list at least one URL such as http://127.0.0.1:8188")
    urls = [check_server_url(u, where) for u in urls]
    twice = sorted({u for u in urls if urls.count(u) > 1})
    if twice:
        raise ComfyUIError(f"{where}: server(s) {twice} named twice; name each once and raise `in_flight` instead")
    return urls


def pair_key(prompt: str, flow: dict, namespace: str = "") -> str:
    """Content hash of (prompt, flow) under `namespace` (e.g. the image metric): equal pairs share one key."""
    blob = json.dumps([namespace, prompt, flow], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ScoreCache:
    """Append-only JSONL of {"key", "score"} lines, flushed and fsynced per score; a torn last line is skipped.

    Args:
        path: the cache file (keep it outside DVC outputs: `dvc repro` deletes a stage's outs before running it).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.scores: dict[str, float] = {}
        if self.path.is_dir():
            raise ComfyUIError(f"score cache {self.path} is a directory; set scoring.options.cache to a file path")
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    self.scores[str(row["key"])] = float(row["score"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a kill mid-write
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def __contains__(self, key: str) -> bool:
        return key in self.scores

    def __len__(self) -> int:
        return len(self.scores)

    def get(self, key: str) -> float | None:
        return self.scores.get(key)

    def put(self, key: str, score: float) -> None:
        """Record one score durably before anything else happens."""
        self.scores[key] = float(score)
        self._file.write(json.dumps({"key": key, "score": float(score)}) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


@dataclass
class FleetStats:
    """What the fleet did: renders, failures, per-server counts, renders per minute (while rendering)."""

    renders: int = 0
    failures: int = 0
    cached: int = 0
    seconds: float = 0.0
    per_server: dict[str, int] = field(default_factory=dict)
    dead: list[str] = field(default_factory=list)

    @property
    def renders_per_minute(self) -> float:
        return 60.0 * self.renders / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "renders": self.renders,
            "failures": self.failures,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "renders_per_minute": round(self.renders_per_minute, 2),
            "per_server": dict(self.per_server),
            "dead_servers": list(self.dead),
        }


class RenderFleet:
    """Renders API graphs on several ComfyUI servers at once.

    Args:
        clients: one ComfyUIClient per server (a client is shared by that server's renders in flight).
        in_flight: most renders submitted to one server and not yet fetched.
        max_attempts: tries per graph, each on a server it has not failed on while one is left (default: 1 + servers).
        max_failures: failures in a row after which a server gets no more renders in this fleet.
    """

    def __init__(
        self, clients: list[ComfyUIClient], in_flight: int = 2, max_attempts: int | None = None, max_failures: int = 3
    ) -> None:
        if not clients:
            raise ComfyUIError("render fleet: no servers; set scoring.options.servers")
        if in_flight < 1 or max_failures < 1 or (max_attempts is not None and max_attempts < 1):
            raise ComfyUIError(
                "render fleet: in_flight, max_attempts and max_failures must be >= 1; fix scoring.options"
            )
        self.clients, self.in_flight, self.max_failures = clients, in_flight, max_failures
        self.max_attempts = max_attempts or len(clients) + 1
        self.stats = FleetStats(per_server={c.url: 0 for c in clients})
        self._streak = [0] * len(clients)
        self._dead: set[int] = set()

    def _pick(self, load: list[int], tried: set[int]) -> int | None:
        live = [s for s in range(len(self.clients)) if s not in self._dead and load[s] < self.in_flight]
        fresh = [s for s in live if s not in tried]
        if not fresh and any(s not in tried and s not in self._dead for s in range(len(self.clients))):
            return None  # wait for an untried server to free a slot rather than repeat a failed one
        pool = fresh or live
        return min(pool, key=lambda s: (load[s], s)) if pool else None

    def render(self, graphs: list[dict], on_image: Callable[[int, bytes], None]) -> None:
        """Render every graph; `on_image(i, png)` runs on the calling thread as each image arrives.

        Raises:
            ComfyUIError: a graph failed `max_attempts` times, or every server is out; images already
            handed to `on_image` stay handed (cache them there to resume).
        """
        pending, tried = deque(range(len(graphs))), {i: set() for i in range(len(graphs))}
        attempts = {i: 0 for i in range(len(graphs))}
        load = [0] * len(self.clients)
        running: dict[Future, tuple[int, int]] = {}
        start, before = time.monotonic(), self.stats.seconds
        with ThreadPoolExecutor(max_workers=len(self.clients) * self.in_flight, thread_name_prefix="comfy") as pool:
            try:
                while pending or running:
                    while pending:
                        s = self._pick(load, tried[pending[0]])
                        if s is None:
                            break
                        i = pending.popleft()
                        load[s] += 1
                        attempts[i] += 1
                        running[pool.submit(self.clients[s].render, graphs[i])] = (i, s)
                    if not running:
                        raise ComfyUIError(
                            f"render fleet: every server failed {self.max_failures} times in a row "
                            f"({', '.join(self.stats.dead)}); check the servers in scoring.options.servers"
                        )
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        i, s = running.pop(fut)
                        load[s] -= 1
                        url = self.clients[s].url
                        try:
                            image = fut.result()
                        except ComfyUIError as exc:
                            self._fail(s, i, attempts[i], exc)
                            tried[i].add(s)
                            if attempts[i] >= self.max_attempts:
                                raise ComfyUIError(
                                    f"render fleet: graph {i} failed on {attempts[i]} attempts; last: {exc}"
                                ) from None
                            pending.appendleft(i)
                            continue
                        self._streak[s] = 0
                        self.stats.renders += 1
                        self.stats.per_server[url] += 1
                        self.stats.seconds = before + time.monotonic() - start
                        on_image(i, image)
            finally:
                self.stats.seconds = before + time.monotonic() - start
                for fut in running:
                    fut.cancel()

    def _fail(self, s: int, i: int, attempt: int, exc: Exception) -> None:
        url = self.clients[s].url
        self.stats.failures += 1
        self._streak[s] += 1
        log.warning("render of graph %d failed on %s (attempt %d): %s", i, url, attempt, exc)
        if self._streak[s] >= self.max_failures and s not in self._dead:
            self._dead.add(s)
            self.stats.dead.append(url)
            log.warning("ComfyUI server %s failed %d renders in a row; no more renders go there", url, self._streak[s])

    def close(self) -> None:
        for client in self.clients:
            client.close()
