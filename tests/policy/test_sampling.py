"""The shared sampling loop: seeded determinism, KV-cache correctness, EOS stop, the processor hook."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor

from flowrl.policy.decoding.sampling import SamplingConfig, inverse_cdf, sample_flows
from flowrl.policy.loading import build_tiny_model
from flowrl.policy.template import format_prompt

PROMPTS = ["a red fox in the snow", "neon city at night, rain, cinematic", "cat"]


@pytest.fixture(scope="module")
def tiny(tiny_params, _base_tokenizer):
    model = build_tiny_model(tiny_params.policy, len(_base_tokenizer), seed=3).eval()
    return model, _base_tokenizer


def test_same_seed_same_flows_other_seed_other_flows(tiny):
    model, tok = tiny
    cfg = SamplingConfig(max_new_tokens=12, batch_size=2, seed=11)
    first = sample_flows(model, tok, PROMPTS, cfg)
    again = sample_flows(model, tok, PROMPTS, cfg)
    other = sample_flows(model, tok, PROMPTS, SamplingConfig(max_new_tokens=12, batch_size=2, seed=12))
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert [c.token_ids for c in first] != [c.token_ids for c in other]
    assert [c.prompt for c in first] == PROMPTS


def test_cached_loop_matches_transformers_greedy(tiny):
    """Near-zero temperature (and top-p) must equal HF greedy decoding, padding and cache included."""
    model, tok = tiny
    enc = tok([format_prompt(p) for p in PROMPTS], return_tensors="pt", padding=True, padding_side="left")
    greedy = model.generate(**enc, do_sample=False, max_new_tokens=8, pad_token_id=tok.pad_token_id, eos_token_id=None)
    expected = greedy[:, enc.input_ids.shape[1] :].tolist()
    for cfg in (
        SamplingConfig(temperature=1e-4, max_new_tokens=8, batch_size=3),
        SamplingConfig(top_p=1e-6, max_new_tokens=8, batch_size=3),
    ):
        got = [c.token_ids for c in sample_flows(model, tok, PROMPTS, cfg)]
        assert got == expected


class ForceEOSAfter(LogitsProcessor):
    """Test processor: only EOS is allowed once `n` tokens were generated."""

    def __init__(self, prompt_width: int, n: int, eos: int):
        self.prompt_width, self.n, self.eos = prompt_width, n, eos

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] - self.prompt_width >= self.n:
            forced = torch.full_like(scores, float("-inf"))
            forced[:, self.eos] = 0.0
            return forced
        return scores


def test_processor_hook_and_eos_stop(tiny):
    model, tok = tiny
    width = tok([format_prompt(PROMPTS[0])], return_tensors="pt").input_ids.shape[1]
    cfg = SamplingConfig(max_new_tokens=50, batch_size=1, seed=5)
    out = sample_flows(model, tok, PROMPTS[:1], cfg, logits_processor=[ForceEOSAfter(width, 4, tok.eos_token_id)])
    assert out[0].finished and len(out[0].token_ids) == 4
    unforced = sample_flows(model, tok, PROMPTS[:1], SamplingConfig(max_new_tokens=6, batch_size=1, seed=5))
    assert not unforced[0].finished and len(unforced[0].token_ids) == 6
    assert unforced[0].token_ids[:4] == out[0].token_ids  # the hook changed nothing before it fired


def test_top_p_and_temperature_filter_as_transformers_warpers():
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    from flowrl.policy.decoding.sampling import build_processors

    torch.manual_seed(0)
    scores = torch.randn(4, 50)
    ids = torch.zeros(4, 1, dtype=torch.long)
    for top_p in (0.1, 0.5, 0.9):
        got = build_processors(SamplingConfig(temperature=0.7, top_p=top_p))(ids, scores)
        want = TopPLogitsWarper(top_p)(ids, TemperatureLogitsWarper(0.7)(ids, scores))
        assert torch.equal(got, want) and torch.isinf(got).any()


def test_a_prompts_flow_depends_on_the_seed_and_its_position_not_on_its_batch(tiny):
    model, tok = tiny
    alone = sample_flows(model, tok, PROMPTS, SamplingConfig(max_new_tokens=12, batch_size=1, seed=5))
    batched = sample_flows(model, tok, PROMPTS, SamplingConfig(max_new_tokens=12, batch_size=3, seed=5))
    assert [c.token_ids for c in alone] == [c.token_ids for c in batched]


def test_inverse_cdf_draws_the_distribution_and_couples_close_ones():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    uniforms = torch.rand(20_000, generator=torch.Generator().manual_seed(0))
    drawn = inverse_cdf(probs.expand(len(uniforms), -1), uniforms)
    freq = torch.bincount(drawn, minlength=4).float() / len(uniforms)
    assert freq[1] == 0 and torch.allclose(freq, probs, atol=0.015)
    close = inverse_cdf(torch.tensor([0.12, 0.0, 0.58, 0.3]).expand(len(uniforms), -1), uniforms)
    independent = inverse_cdf(
        probs.expand(len(uniforms), -1), torch.rand(20_000, generator=torch.Generator().manual_seed(1))
    )
    assert (close == drawn).float().mean() > 0.97 > 0.6 > (independent == drawn).float().mean()
