"""Policy methods: skip reasons without models, reranking choice, and a run on tiny random policy/reward models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flowrl.evaluation.evaluate import evaluate
from flowrl.evaluation.policy_methods import (
    GRPO_DIR,
    REWARD_DIR,
    SFT_DIR,
    best_by_reward,
    gamma_method_name,
    policy_methods,
)

from .conftest import HOLDOUT, REPO, ToyScorer


@pytest.fixture(scope="module")
def tiny_params():
    from flowrl.params.model import load_params

    return load_params(REPO / "params.yaml", profile="tiny")


POLICY = ["sft", "sft_rerank", "grpo", "grpo_cfg_1.5", "grpo_cfg_2"]


def test_method_names_and_rerank_choice():
    assert [gamma_method_name(g) for g in (1.5, 2.0, 0.75)] == ["grpo_cfg_1.5", "grpo_cfg_2", "grpo_cfg_0.75"]
    assert best_by_reward(["a", "b", "c"], [0.1, 0.9, 0.5], [True, True, True]) == 1
    assert best_by_reward(["a", "b", "c"], [0.1, 0.9, 0.5], [True, False, True]) == 2  # invalid never wins
    assert best_by_reward(["a", "b"], [0.0, 0.0], [False, False]) == 0


def test_everything_is_skipped_with_a_reason_when_no_models(tmp_path, eval_params):
    available, skipped = policy_methods(eval_params, tmp_path)
    assert available == {}
    assert list(skipped) == POLICY
    assert "models/sft is missing" in skipped["sft"]
    (tmp_path / SFT_DIR).mkdir(parents=True)
    (tmp_path / SFT_DIR / "policy.json").write_text("{}")
    available, skipped = policy_methods(eval_params, tmp_path)
    assert list(available) == ["sft"]
    assert "models/reward/full is missing" in skipped["sft_rerank"] and "models/grpo is missing" in skipped["grpo"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, tiny_params) -> Path:
    """models/sft (LoRA on the tiny random Llama), models/grpo (LoRA on the merged SFT) and a tiny reward ensemble."""
    from peft import LoraConfig, get_peft_model

    from flowrl.policy.loading import build_tiny_model, load_sft_merged, load_tokenizer, save_policy_spec
    from flowrl.reward.encoder import build_surrogate, load_reward_tokenizer
    from flowrl.reward.ensemble import Ensemble

    root = tmp_path_factory.mktemp("models")
    params = tiny_params
    tokenizer = load_tokenizer(params.policy)
    torch.manual_seed(0)
    sft = get_peft_model(
        build_tiny_model(params.policy, len(tokenizer), seed=1),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    sft.save_pretrained(root / SFT_DIR)
    tokenizer.save_pretrained(root / SFT_DIR)
    save_policy_spec(root / SFT_DIR, params.policy, 1, len(tokenizer))
    merged, _ = load_sft_merged(root / SFT_DIR)
    grpo = get_peft_model(
        merged, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    grpo.save_pretrained(root / GRPO_DIR)
    reward_tok = load_reward_tokenizer(params.reward)
    members = [build_surrogate(params.reward, len(reward_tok), seed=i) for i in range(2)]
    Ensemble(members, reward_tok, max_length=64, batch_size=8, bf16=False).save(root / REWARD_DIR)
    return root


def test_sft_rerank_keeps_the_valid_flow_the_ensemble_likes_best(tmp_path, eval_params, stage_root, monkeypatch):
    from flowrl.evaluation import policy_methods as pm
    from flowrl.io import read_jsonl
    from flowrl.policy.decoding import sampling
    from flowrl.policy.decoding.sampling import Completion

    texts = [r["text"] for r in read_jsonl(stage_root / "data/encode/flows.jsonl")][:2]
    pool = ["not a flow", texts[0], texts[1]]  # sampled in this order for every prompt
    liked = texts[1]

    def fake_sample(model, tokenizer, prompts, cfg, adapter=None, logits_processor=None):
        return [Completion(p, pool[i % len(pool)], [], True) for i, p in enumerate(prompts)]

    class FakeEnsemble:
        def predict(self, prompts, flows):
            assert "not a flow" not in flows  # invalid flows never reach the surrogates
            return torch.tensor([1.0 if f == liked else 0.0 for f in flows]), torch.zeros(len(flows))

    for folder, marker in ((SFT_DIR, "policy.json"), (REWARD_DIR, "ensemble.json")):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / marker).write_text("{}")
    monkeypatch.setattr(sampling, "sample_flows", fake_sample)
    monkeypatch.setattr(pm.PolicyModels, "sft", (None, None))
    monkeypatch.setattr(pm.PolicyModels, "ensemble", FakeEnsemble())
    params = eval_params.model_copy(update={"evaluate": eval_params.evaluate.model_copy(update={"rerank_n": 3})})
    available, _ = policy_methods(params, tmp_path)
    picks = available["sft_rerank"](["a", "b"])
    assert [c.text for c in picks] == [liked, liked]
    assert [c.text for c in available["sft"](["a", "b", "c"])] == pool


@pytest.mark.slow
def test_stage_with_tiny_policy_models(tiny_models, stage_root, eval_params):
    for folder in ("models",):
        (stage_root / folder).symlink_to(tiny_models / folder)
    params = eval_params.model_copy(
        update={"evaluate": eval_params.evaluate.model_copy(update={"max_new_tokens": 6, "rerank_n": 2})}
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on the shared cores
    try:
        summary = evaluate(params, stage_root, ToyScorer())
    finally:
        torch.set_num_threads(before)
    assert summary["n_skipped"] == 0
    metrics = json.loads((stage_root / "reports/evaluate/metrics.json").read_text())
    assert set(POLICY) <= set(metrics)
    for name in POLICY:
        # random tiny models write no valid flow in 6 tokens: invalid flows score 0 and never win
        assert metrics[name]["validity"] == 0.0 and metrics[name]["mean_score"] == 0.0
        assert metrics[name]["win_rate"]["comfygen"] == 0.0
    rows = [json.loads(line) for line in (stage_root / "reports/evaluate/flows.jsonl").read_text().splitlines()]
    assert sum(r["method"] == "grpo_cfg_2" for r in rows) == len(HOLDOUT) * params.evaluate.samples_per_prompt
    assert (stage_root / "reports/evaluate/novelty_vs_gamma.png").stat().st_size > 2000
