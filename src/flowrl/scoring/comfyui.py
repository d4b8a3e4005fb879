"""The paper's scorer: render the flow in ComfyUI and score the image with HPSv2 (optional extra `hps`)."""

from __future__ import annotations

import io
from typing import Callable

from tqdm import tqdm

from flowrl.comfy.client import ComfyUIClient
from flowrl.comfy.graph import fill_prompt
from flowrl.scoring.base import ScorerError

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

    Args:
        url: ComfyUI server base URL.
        timeout: seconds per HTTP request and per render.
        retries: extra attempts on connection errors, timeouts and server errors (exponential backoff).
        hps_version: HPSv2 checkpoint version ("v2.0" or "v2.1").
        image_scorer: replaces HPSv2 (tests, other image metrics); `f(png_bytes, prompt) -> float`.
    """

    def __init__(self, url: str = "http://127.0.0.1:8188", timeout: float = 300.0, retries: int = 3,
                 hps_version: str = "v2.1", image_scorer: ImageScorer | None = None, backoff: float = 1.0,
                 poll_interval: float = 0.5) -> None:
        self.client = ComfyUIClient(url, timeout=timeout, retries=retries, backoff=backoff, poll_interval=poll_interval)
        self.image_scorer = image_scorer or hps_image_scorer(hps_version)

    def score(self, prompts: list[str], flows: list[dict]) -> list[float]:
        """One HPS score per (prompts[i], flows[i]); rendering or server failures raise ComfyUIError."""
        if len(prompts) != len(flows):
            raise ScorerError(f"ComfyUIScorer.score: {len(prompts)} prompts but {len(flows)} flows; pass one flow per prompt")
        out = []
        for prompt, flow in tqdm(list(zip(prompts, flows)), desc="rendering in ComfyUI", unit="image", disable=len(flows) < 4):
            out.append(float(self.image_scorer(self.client.render(fill_prompt(flow, prompt)), prompt)))
        return out

    def __call__(self, prompts: list[str], completions: list[dict], **_) -> list[float]:
        """trl-style reward call."""
        return self.score(list(prompts), list(completions))
