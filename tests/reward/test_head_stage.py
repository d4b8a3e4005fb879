"""The reward stage with head members (the tiny and cpu default): learns, writes, resolves tau, resumes."""

from __future__ import annotations

import json
import math

import pytest
import torch

import flowrl.reward.head_train as head_train
import flowrl.reward.train as stage
from flowrl.reward.ensemble import Ensemble
from flowrl.reward.head import HeadEnsemble
from flowrl.reward.shaping import ShapedReward
from tests.reward.conftest import make_rows, synthetic_flow


class Killed(Exception):
    pass


@pytest.fixture
def trained(tiny_params, triplet_root):
    return stage.run(tiny_params, triplet_root), triplet_root


def test_head_stage_learns_and_writes_outputs(trained, tiny_params):
    metrics, root = trained
    assert metrics["ensemble_spearman"] > 0.5  # the synthetic score is learnable; random is ~0
    for key in (
        "ensemble_mse",
        "sigma_scored",
        "sigma_unscored",
        "sigma_perturbed",
        "sigma_ratio_perturbed",
        "member_2_pearson",
        "prefix_spearman",
        "tau",
        "share_zeroed_seen",
        "stage_seconds",
    ):
        assert math.isfinite(metrics[key]), key
    assert json.loads((root / "reports/reward/metrics.json").read_text()) == pytest.approx(metrics, nan_ok=True)
    full = Ensemble.load(root / "models/reward/full")
    assert isinstance(full, HeadEnsemble) and len(full) == 3 and len(Ensemble.load(root / "models/reward/prefix")) == 1
    spec = json.loads((root / "models/reward/full/ensemble.json").read_text())
    assert spec["kind"] == "head" and spec["tau"] == pytest.approx(metrics["tau"])
    assert (root / "models/reward/cache/prompt_embeddings.safetensors").exists()


def test_tau_is_the_configured_quantile_of_heldout_sigma(trained, tiny_params):
    metrics, root = trained
    full = Ensemble.load(root / "models/reward/full")
    test = stage.held_out_rows(root, tiny_params.reward, tiny_params.seed)
    _, std = full.predict([r["prompt"] for r in test], [r["flow"] for r in test])
    assert metrics["tau"] == pytest.approx(
        float(torch.quantile(std.double(), tiny_params.reward.tau_quantile)), rel=1e-5
    )
    assert (std > metrics["tau"]).float().mean().item() == pytest.approx(1 - tiny_params.reward.tau_quantile, abs=0.05)


def test_sigma_is_higher_on_perturbed_flows_than_on_heldout_ones(trained):
    metrics, _ = trained
    assert metrics["sigma_perturbed"] > metrics["sigma_scored"]


def test_shaped_reward_uses_resolved_tau_and_penalises_unreadable_flows(trained, tiny_params):
    metrics, root = trained
    reward = ShapedReward.load(root / "models/reward", tiny_params.reward, validator=lambda flow: True)
    assert reward.cfg.tau == pytest.approx(metrics["tau"])
    flow = make_rows(1, 5)[0]["flow"]
    out = reward(["a photo picture of a cat", "a photo picture of a cat"], [flow, "garbage = not a flow"])
    assert out[1] == tiny_params.reward.invalid_reward and out[0] != tiny_params.reward.invalid_reward
    offsets = [[(i, i + 1) for i in range(len(flow))], [(0, 1)]]
    tokens = reward.per_token_rewards(["p", "p"], [flow, "garbage = not a flow"], offsets)
    assert torch.isfinite(tokens[0]).all() and len(set(tokens[0].tolist())) <= flow.count("\n") + 1
    assert tokens[1].tolist() == [tiny_params.reward.invalid_reward]


def test_missing_resolved_tau_falls_back_to_tau_and_names_the_fix(trained, tiny_params):
    _, root = trained
    spec_path = root / "models/reward/full/ensemble.json"
    spec = json.loads(spec_path.read_text())
    spec["tau"] = None
    spec_path.write_text(json.dumps(spec))
    with pytest.warns(UserWarning, match="dvc repro reward"):
        assert ShapedReward.load(root / "models/reward", tiny_params.reward).cfg.tau == tiny_params.reward.tau
    no_quantile = tiny_params.reward.model_copy(update={"tau_quantile": None, "tau": 0.5})
    assert ShapedReward.load(root / "models/reward", no_quantile).cfg.tau == 0.5


def test_resume_after_kill_keeps_finished_head_members(tiny_params, triplet_root, monkeypatch):
    real, calls = head_train.train_head, []

    def dies_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(head_train, "train_head", dies_on_second)
    with pytest.raises(Killed):
        stage.run(tiny_params, triplet_root)
    first = triplet_root / "models/reward/full/member_0/model.safetensors"
    stamp = first.stat().st_mtime_ns
    assert not (triplet_root / "models/reward/full/member_1").exists()
    calls.clear()
    monkeypatch.setattr(head_train, "train_head", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    metrics = stage.run(tiny_params, triplet_root)
    assert len(calls) == 2 + 1  # members 1 and 2, then the prefix member; member 0 is kept
    assert first.stat().st_mtime_ns == stamp and metrics["prompt_cache_hits"] > 0


def test_changed_settings_retrain_and_stale_prompt_cache_is_rebuilt(tiny_params, triplet_root):
    stage.run(tiny_params, triplet_root)
    first = (triplet_root / "models/reward/full/member_0/model.safetensors").stat().st_mtime_ns
    head = tiny_params.reward.head.model_copy(update={"prompt_max_length": 16})
    params = tiny_params.model_copy(update={"reward": tiny_params.reward.model_copy(update={"head": head})})
    metrics = stage.run(params, triplet_root)
    assert metrics["prompt_cache_rebuilt"] == 1.0 and metrics["prompt_cache_hits"] == 0
    assert (triplet_root / "models/reward/full/member_0/model.safetensors").stat().st_mtime_ns != first


def test_head_ensemble_save_load_round_trip(trained, tmp_path):
    _, root = trained
    full = Ensemble.load(root / "models/reward/full")
    prompts, flows = (
        ["a anime picture of a cat"] * 2,
        [synthetic_flow("anime", "euler", 20), synthetic_flow("photo", "ddim", 30)],
    )
    full.save(tmp_path / "copy")
    again = Ensemble.load(tmp_path / "copy")
    for a, b in zip(full.predict(prompts, flows), again.predict(prompts, flows)):
        torch.testing.assert_close(a, b)
    mean, std = full.predict(prompts + ["x"], flows + ["no such = flow"])
    assert math.isnan(mean[2]) and math.isinf(std[2]) and torch.isfinite(mean[:2]).all()


def test_a_smaller_ensemble_drops_the_extra_members(trained, tiny_params):
    _, root = trained
    cfg = tiny_params.reward.model_copy(update={"n_models": 1, "n_prefix_models": 0})
    metrics = stage.run(tiny_params.model_copy(update={"reward": cfg}), root)
    assert sorted(p.name for p in (root / "models/reward/full").glob("member_*")) == ["member_0"]
    assert not (root / "models/reward/prefix").exists() and metrics["n_models"] == 1
    assert metrics["tau"] == 0.0  # one member has no spread


def test_score_grid_equals_predict_on_every_pair(trained):
    _, root = trained
    full = Ensemble.load(root / "models/reward/full")
    rows = make_rows(6, 11)
    prompts, flows = [r["prompt"] for r in rows[:3]], [r["flow"] for r in rows] + ["not a flow"]
    mean, std = full.score_grid(prompts, flows)
    pm, ps = full.predict([p for p in prompts for _ in flows], [f for _ in prompts for f in flows])
    assert torch.allclose(mean, pm.view(3, -1), atol=1e-5, equal_nan=True)
    assert torch.allclose(std[:, :-1], ps.view(3, -1)[:, :-1], atol=1e-5) and torch.isinf(std[:, -1]).all()
