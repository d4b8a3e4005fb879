"""The paper's scorer: render the flow in ComfyUI and score the image with HPSv2 (optional extra `hps`)."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

from tqdm import tqdm

from flowrl.comfy.client import ComfyUIClient
from flowrl.comfy.graph import fill_prompt
from flowrl.scoring.base import ScorerError
from flowrl.scoring.fleet import RenderFleet, ScoreCache, load_servers, pair_key

log = logging.getLogger(__name__)

ImageScorer = Callable[[bytes, str], float]


def hps_image_scorer(hps_version: str = "v2.1") -> ImageScorer:
    """An image scorer `f(png_bytes, prompt) -> float` backed by hpsv2 (imported lazily)."""
    try:
        import hpsv2
        from PIL import Image
    except ImportError:
        raise ScorerError("ComfyUIScorer needs the HPSv2 package: pip install flowrl[hps]") from None

    def score(image: bytes, prompt: str) -> float:
        result = hpsv2.score(Image.open(io.BytesIO(image)).convert("RGB"), prompt, hps_version=hps_version)
        return float(result[0] if isinstance(result, (list, tuple)) else result)

    return score


class ComfyUIScorer:
    """Scores (prompt, flow) by rendering the prompt-filled flow in ComfyUI and scoring the image with HPSv2.

    With `servers`, renders run on a fleet (`scoring/fleet.py`): `in_flight` per server, a failed render retried on
    another server. With `cache`, every score is kept on disk by content hash of (prompt, flow), so a killed run
    resumes without rendering anything twice. `stats` reports renders, failures and renders per minute.

    Args:
        url: ComfyUI server base URL (one server; ignored when `servers` is given).
        servers: several server URLs, or a file naming one URL a line.
        in_flight: renders submitted to one server and not yet fetched (2 keeps its GPU busy while an image is fetched).
        cache: score cache file (JSONL); None keeps no cache. Keep it outside DVC outputs.
        timeout: seconds per HTTP request and per render.
        retries: extra attempts of one HTTP request on the same server (connection errors, timeouts, 5xx).
        max_failures: failures in a row after which a server of the fleet gets no more renders.
        hps_version: HPSv2 checkpoint version ("v2.0" or "v2.1").
        image_scorer: replaces HPSv2 (tests, other image metrics); `f(png_bytes, prompt) -> float`.
    """

    def __init__(
        self,
        url: str | None = None,
        timeout: float = 300.0,
        retries: int = 3,
        hps_version: str = "v2.1",
        image_scorer: ImageScorer | None = None,
        backoff: float = 1.0,
        poll_interval: float = 0.5,
        servers: str | list[str] | None = None,
        in_flight: int = 1,
        cache: str | None = None,
        max_failures: int = 3,
    ) -> None:
        if servers is not None and url is not None:
            raise ScorerError(
                "ComfyUIScorer: give either scoring.options.url (one server) or scoring.options.servers, not both"
            )
        urls = load_servers(servers) if servers is not None else [url or "http://127.0.0.1:8188"]
        setting = "scoring.options.servers" if servers is not None else "scoring.options.url"
        self.image_scorer = image_scorer or hps_image_scorer(hps_version)
        self.namespace = "custom" if image_scorer is not None else f"hps-{hps_version}"
        clients = [
            ComfyUIClient(
                u, timeout=timeout, retries=retries, backoff=backoff, poll_interval=poll_interval, setting=setting
            )
            for u in urls
        ]
        self.client = clients[0]
        self.fleet = RenderFleet(clients, in_flight=in_flight, max_failures=max_failures)
        self.cache = ScoreCache(cache) if cache else None

    @property
    def stats(self) -> dict:
        """Renders, cache hits, failures, renders per minute, renders per server, servers given up on."""
        return self.fleet.stats.as_dict()

    def score(self, prompts: list[str], flows: list[dict]) -> list[float]:
        """One HPS score per (prompts[i], flows[i]); cached pairs are not rendered again.

        Raises:
            ComfyUIError: a render failed on every attempt, or every server is out (scores so far stay cached).
        """
        if len(prompts) != len(flows):
            raise ScorerError(
                f"ComfyUIScorer.score: {len(prompts)} prompts but {len(flows)} flows; pass one flow per prompt"
            )
        keys = [pair_key(p, f, self.namespace) for p, f in zip(prompts, flows)]
        out: list[float | None] = [self.cache.get(k) if self.cache is not None else None for k in keys]
        todo: dict[str, list[int]] = {}  # equal pairs in one batch are rendered once
        for i, (key, value) in enumerate(zip(keys, out)):
            if value is None:
                todo.setdefault(key, []).append(i)
        self.fleet.stats.cached += len(prompts) - sum(len(v) for v in todo.values())
        firsts = [idx[0] for idx in todo.values()]
        bar = tqdm(total=len(firsts), desc="rendering in ComfyUI", unit="image", disable=len(firsts) < 4)

        def on_image(j: int, image: bytes) -> None:
            i = firsts[j]
            value = float(self.image_scorer(image, prompts[i]))
            if self.cache is not None:
                self.cache.put(keys[i], value)
            for k in todo[keys[i]]:
                out[k] = value
            bar.update(1)
            bar.set_postfix(per_min=f"{self.fleet.stats.renders_per_minute:.1f}")

        try:
            self.fleet.render([fill_prompt(flows[i], prompts[i]) for i in firsts], on_image)
        finally:
            bar.close()
        if firsts:
            log.info("ComfyUI fleet: %s", self.stats)
        return [float(v) for v in out]

    def __call__(self, prompts: list[str], completions: list[dict], **_) -> list[float]:
        """trl-style reward call."""
        return self.score(list(prompts), list(completions))

    def close(self) -> None:
        """Close HTTP pools and the cache file."""
        self.fleet.close()
        if self.cache is not None:
            self.cache.close()
