"""Redrawing unusable flows at inference (flowrl.policy.decoding.redraw)."""

import json
from pathlib import Path

from flowrl.encoding.policy_view import check_flow_text, policy_text
from flowrl.policy.decoding.redraw import SEED_STEP, draw_usable
from flowrl.policy.decoding.sampling import Completion, SamplingConfig

BASE = Path(__file__).parents[2] / "src/flowrl/data/base_flows/sd15_anime_clipskip.json"
USABLE = policy_text(json.loads(BASE.read_text()))
ORPHAN = USABLE + "\nVAELoader vae_name=vae-ft-mse-840000-ema-pruned.safetensors"  # a loader that feeds nothing


def test_the_fixtures_are_what_they_claim():
    assert check_flow_text(USABLE).usable
    assert check_flow_text(ORPHAN).valid and not check_flow_text(ORPHAN).usable


class Sampler:
    """Writes an unusable flow for a prompt until its `bad` count runs out; records the seeds and batches asked."""

    def __init__(self, bad: dict[str, int]):
        self.bad = dict(bad)
        self.calls: list[tuple[list[str], int]] = []

    def __call__(self, prompts, cfg):
        self.calls.append((list(prompts), cfg.seed))
        out = []
        for p in prompts:
            text = ORPHAN if self.bad.get(p, 0) > 0 else USABLE
            self.bad[p] = self.bad.get(p, 0) - 1
            out.append(Completion(p, text, [], True))
        return out


def test_only_unusable_prompts_are_redrawn_with_new_seeds():
    sampler = Sampler({"b": 1, "c": 2})
    drawn = draw_usable(sampler, ["a", "b", "c"], SamplingConfig(seed=5), retries=2)
    assert [d.draws for d in drawn] == [1, 2, 3]
    assert all(check_flow_text(d.completion.text).usable for d in drawn)
    assert sampler.calls == [(["a", "b", "c"], 5), (["b", "c"], 5 + SEED_STEP), (["c"], 5 + 2 * SEED_STEP)]


def test_retries_bound_the_draws_and_the_last_flow_is_kept():
    sampler = Sampler({"a": 9})
    drawn = draw_usable(sampler, ["a"], SamplingConfig(seed=0), retries=1)
    assert drawn[0].draws == 2 and not check_flow_text(drawn[0].completion.text).usable
    assert draw_usable(Sampler({"a": 9}), ["a"], SamplingConfig(), retries=0)[0].draws == 1
