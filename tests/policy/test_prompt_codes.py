"""Prompt codes: k-means codebooks over prompt embeddings, written as tokens before the prompt."""

from __future__ import annotations

import numpy as np
import pytest

from flowrl.policy.prompt_codes import PromptCodes, code_token, coded_prompts

ENCODER = {
    "source": "tiny",
    "model": None,
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128},
}


def two_clusters(n: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal([1.0, 0.0, 0.0], 0.05, size=(n, 3))
    b = rng.normal([0.0, 1.0, 0.0], 0.05, size=(n, 3))
    return np.concatenate([a, b]).astype(np.float32)


def test_codes_separate_what_the_encoder_separates():
    emb = two_clusters()
    codes = PromptCodes.fit(emb, [2, 4], seed=0, encoder=ENCODER, max_length=32)
    coarse = codes.codes(emb)[:, 0]
    assert len(set(coarse[:40])) == 1 and len(set(coarse[40:])) == 1 and coarse[0] != coarse[40]
    assert codes.tokens() == [code_token(0, 0), code_token(0, 1), *(code_token(1, k) for k in range(4))]


def test_apply_writes_one_token_per_codebook_before_the_prompt():
    emb = two_clusters()
    codes = PromptCodes.fit(emb, [2, 3], seed=0, encoder=ENCODER, max_length=32)
    out = codes.apply(["  a red fox "], embeddings=emb[:1])
    prefix, text = out[0].split(" ", 1)
    assert text == "a red fox" and prefix.count("<pc") == 2 and prefix.startswith("<pc0_")


def test_save_and_load_round_trip(tmp_path):
    emb = two_clusters()
    codes = PromptCodes.fit(emb, [2, 5], seed=1, encoder=ENCODER, max_length=32)
    codes.save(tmp_path)
    again = PromptCodes.load(tmp_path)
    assert again is not None and again.encoder == ENCODER and again.max_length == 32
    assert (again.codes(emb) == codes.codes(emb)).all()


def test_a_policy_without_codes_reads_the_prompt_unchanged(tmp_path):
    assert PromptCodes.load(tmp_path) is None
    assert coded_prompts(None, ["a castle"]) == ["a castle"]


def test_embeds_with_the_named_encoder_when_no_embeddings_are_given():
    emb = np.random.default_rng(0).normal(size=(20, 64)).astype(np.float32)
    codes = PromptCodes.fit(emb, [3], seed=0, encoder=ENCODER, max_length=32)
    out = codes.apply(["a castle at dawn", "a castle at dawn"])
    assert out[0] == out[1] and out[0].startswith("<pc0_")


def test_fit_needs_embeddings():
    with pytest.raises(ValueError, match="at least one"):
        PromptCodes.fit(np.zeros((0, 3)), [2], seed=0, encoder=ENCODER, max_length=32)
