"""The reward stage with fine-tuned members on the tiny profile: it learns, writes its outputs, and resumes after a kill.

Head members (the tiny and cpu default) are tested in test_head_stage.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

import flowrl.reward.finetune_train as finetune
import flowrl.reward.train as stage
from flowrl.errors import FlowRLError
from flowrl.reward.encoder import load_reward_tokenizer
from flowrl.reward.ensemble import Ensemble
from flowrl.reward.shaping import ShapedReward
from tests.reward.conftest import make_rows


class Killed(Exception):
    pass


def test_stage_learns_and_writes_outputs(finetune_params, triplet_root):
    tiny_params = finetune_params
    metrics = stage.run(tiny_params, triplet_root)
    assert metrics["ensemble_spearman"] > 0.2  # the synthetic score is learnable; random is ~0
    assert 0 <= metrics["truncated_share"] <= 1 and metrics["mean_input_tokens"] > 10
    for key in (
        "ensemble_mse",
        "sigma_scored",
        "sigma_unscored",
        "member_0_spearman",
        "member_2_pearson",
        "prefix_spearman",
    ):
        assert math.isfinite(metrics[key]), key
    assert json.loads((triplet_root / "reports/reward/metrics.json").read_text()) == pytest.approx(metrics, nan_ok=True)
    assert (triplet_root / "reports/reward/scatter.png").read_bytes()[:4] == b"\x89PNG"
    assert len(Ensemble.load(triplet_root / "models/reward/full")) == 3
    assert len(Ensemble.load(triplet_root / "models/reward/prefix")) == 1
    assert not list((triplet_root / "models/reward/full").glob(".work_*"))  # checkpoints cleared

    # the saved models drive the shaped reward GRPO uses, with real tokenizer offsets
    reward = ShapedReward.load(triplet_root / "models/reward", tiny_params.reward, validator=lambda flow: True)
    flow = make_rows(1, 5)[0]["flow"]
    enc = reward.full.tokenizer(flow, return_offsets_mapping=True, add_special_tokens=False)
    (tokens,) = reward.per_token_rewards(["a photo picture of a cat"], [flow], [enc["offset_mapping"]])
    assert tokens.shape == (len(enc["input_ids"]),) and torch.isfinite(tokens).all()
    assert len(set(tokens.tolist())) <= flow.count("\n") + 1  # one value per component (line)


def test_resume_after_kill_keeps_finished_models(finetune_params, triplet_root, monkeypatch):
    tiny_params = finetune_params
    real, calls = finetune.train_surrogate, []

    def dies_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune, "train_surrogate", dies_on_second)
    with pytest.raises(Killed):
        stage.run(tiny_params, triplet_root)
    first = triplet_root / "models/reward/full/member_0/model.safetensors"
    stamp = first.stat().st_mtime_ns
    assert not (triplet_root / "models/reward/full/member_1").exists()

    calls.clear()
    monkeypatch.setattr(finetune, "train_surrogate", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    stage.run(tiny_params, triplet_root)
    assert len(calls) == 2 + 1  # members 1 and 2, then the prefix model; member 0 is not retrained
    assert first.stat().st_mtime_ns == stamp


def test_resume_within_a_model_from_its_epoch_checkpoint(finetune_params, tmp_path):
    tiny_params = finetune_params
    cfg = tiny_params.reward.model_copy(update={"epochs": 3})
    rows = make_rows(64, 0)
    tokenizer = load_reward_tokenizer(cfg)

    class KillAfterFirstEpoch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise Killed

    with pytest.raises(Killed):
        stage.train_ensemble(tmp_path, rows, cfg, 1, tokenizer, seed=0, callbacks=[KillAfterFirstEpoch()])
    assert list((tmp_path / ".work_0").glob("checkpoint-*"))
    (stats,) = stage.train_ensemble(tmp_path, rows, cfg, 1, tokenizer, seed=0)
    assert stats["resumed_from_step"] == 64 // cfg.batch_size  # one epoch of steps was kept


def test_finished_member_is_retrained_when_data_or_settings_change(finetune_params, tmp_path):
    tiny_params = finetune_params
    cfg = tiny_params.reward.model_copy(update={"epochs": 1})
    rows, tokenizer = make_rows(32, 0), load_reward_tokenizer(cfg)
    (first,) = stage.train_ensemble(tmp_path, rows, cfg, 1, tokenizer, seed=0)
    (same,) = stage.train_ensemble(tmp_path, rows, cfg, 1, tokenizer, seed=0)
    assert same == first  # kept, not retrained
    (other,) = stage.train_ensemble(tmp_path, make_rows(32, 1), cfg, 1, tokenizer, seed=0)
    (longer,) = stage.train_ensemble(tmp_path, rows, cfg.model_copy(update={"epochs": 2}), 1, tokenizer, seed=0)
    assert len({first["fingerprint"], other["fingerprint"], longer["fingerprint"]}) == 3
    assert longer["final_loss"] != first["final_loss"]


@pytest.mark.parametrize("n_models", [1, 3, 5])
def test_kfold_members_each_leave_out_a_different_fold(n_models):
    splits = stage.member_splits(50, n_models, "kfold", seed=0)
    left_out = [set(range(50)) - set(s.tolist()) for s in splits]
    assert len(splits) == n_models
    if n_models > 1:
        assert set().union(*left_out) == set(range(50))
        assert all(not (a & b) for i, a in enumerate(left_out) for b in left_out[i + 1 :])
    else:
        assert sorted(splits[0].tolist()) == list(range(50))


def test_bootstrap_members_resample_with_replacement():
    splits = stage.member_splits(50, 3, "bootstrap", seed=0)
    assert all(len(s) == 50 for s in splits) and any(len(np.unique(s)) < 50 for s in splits)
    assert not np.array_equal(splits[0], splits[1])


def test_missing_triplets_say_which_stage_to_run(tiny_params, tmp_path):
    with pytest.raises(FlowRLError, match="train.jsonl"):
        stage.run(tiny_params, tmp_path)


def test_flow_tokens_are_added_to_the_reward_tokenizer(finetune_params, triplet_root):
    tiny_params = finetune_params
    from flowrl.io import write_json

    write_json(triplet_root / "data/encode/vocab.json", ["<KSampler>", "<SaveImage>"])
    cfg = tiny_params.reward.model_copy(
        update={"add_flow_tokens": True, "n_models": 1, "n_prefix_models": 0, "epochs": 1}
    )
    metrics = stage.run(tiny_params.model_copy(update={"reward": cfg}), triplet_root)
    assert metrics["n_flow_tokens_added"] == 2
    ensemble = Ensemble.load(triplet_root / "models/reward/full")
    assert "<KSampler>" in ensemble.tokenizer.get_vocab()
    assert ensemble.members[0].get_input_embeddings().num_embeddings >= len(ensemble.tokenizer)


def test_added_flow_tokens_start_from_their_pieces(finetune_params, tmp_path):
    tiny_params = finetune_params
    from flowrl.encoding.vocab import extend_tokenizer, token_pieces
    from flowrl.reward.encoder import load_reward_tokenizer

    class Capture(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.rows = model.get_input_embeddings().weight.detach().clone()

    tokenizer = load_reward_tokenizer(tiny_params.reward)
    pieces = token_pieces(tokenizer, ["KSampler", " ckpt_name="])
    extend_tokenizer(tokenizer, list(pieces))
    capture = Capture()
    stage.train_ensemble(
        tmp_path,
        make_rows(16, 0),
        tiny_params.reward.model_copy(update={"epochs": 1}),
        1,
        tokenizer,
        seed=0,
        callbacks=[capture],
        pieces=pieces,
    )
    for token, ids in pieces.items():
        assert len(ids) > 1
        assert torch.allclose(capture.rows[tokenizer.convert_tokens_to_ids(token)], capture.rows[ids].mean(0)), token
