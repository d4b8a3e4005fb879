"""The prompt-embedding cache: hits are not recomputed, a cache from other settings is rebuilt."""

from __future__ import annotations

import numpy as np
import pytest

from flowrl.params.model import RewardConfig
from flowrl.reward.prompt_cache import PromptEmbedder

CFG = RewardConfig(source="tiny", bf16=False)


def test_embeddings_are_unit_norm_and_cached_on_disk(tmp_path):
    path = tmp_path / "cache.safetensors"
    emb = PromptEmbedder(CFG, 32, path)
    first = emb.embed(["a cat", "a dog", "a cat"])
    assert first.shape == (3, CFG.tiny.hidden_size) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    assert np.array_equal(first[0], first[2]) and len(emb) == 2
    emb.save()

    again = PromptEmbedder(CFG, 32, path)
    assert len(again) == 2 and not again.rebuilt
    again._encode = lambda *a, **k: pytest.fail("a cached prompt was re-encoded")
    assert np.allclose(again.embed(["a dog", "a cat"]), first[[1, 0]])


def test_cache_from_other_settings_is_rebuilt_not_reused(tmp_path):
    path = tmp_path / "cache.safetensors"
    emb = PromptEmbedder(CFG, 32, path)
    emb.embed(["a cat"])
    emb.save()
    other = PromptEmbedder(CFG, 16, path)  # another max_length: other embeddings
    assert other.rebuilt and len(other) == 0
    other.embed(["a cat"])
    other.save()
    assert PromptEmbedder(CFG, 16, path).rebuilt is False and PromptEmbedder(CFG, 32, path).rebuilt is True


def test_unreadable_cache_file_is_rebuilt(tmp_path):
    path = tmp_path / "cache.safetensors"
    path.write_bytes(b"not safetensors")
    emb = PromptEmbedder(CFG, 32, path)
    assert emb.rebuilt and emb.embed(["x"]).shape == (1, CFG.tiny.hidden_size)
