"""Ensemble mean/std shapes, population std, save/load round trip."""

from __future__ import annotations

import pytest
import torch

from flowrl.params.model import RewardConfig
from flowrl.reward.encoder import RewardLoadError, build_surrogate, load_reward_tokenizer
from flowrl.reward.ensemble import Ensemble

CFG = RewardConfig(source="tiny", bf16=False, max_length=64)
PROMPTS = [f"a photo of thing {i}" for i in range(5)]
FLOWS = [f"CheckpointLoaderSimple ckpt_name=m{i}.safetensors\nSaveImage images=@1" for i in range(5)]


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    tokenizer = load_reward_tokenizer(CFG)
    return Ensemble(
        [build_surrogate(CFG, len(tokenizer), seed=s) for s in range(3)],
        tokenizer,
        CFG.max_length,
        batch_size=2,
        bf16=False,
    )


def test_mean_std_shapes_and_population_std(ensemble):
    mean, std = ensemble.predict(PROMPTS, FLOWS)
    scores = ensemble.member_scores(PROMPTS, FLOWS)
    assert scores.shape == (3, 5) and mean.shape == (5,) and std.shape == (5,)
    torch.testing.assert_close(mean, scores.mean(0))
    population = ((scores - scores.mean(0)) ** 2).mean(0).sqrt()
    torch.testing.assert_close(std, population)
    assert not torch.allclose(std, scores.std(0))  # not the sample (N-1) std


def test_save_load_round_trip_gives_identical_predictions(ensemble, tmp_path):
    ensemble.save(tmp_path / "ens")
    assert (tmp_path / "ens/member_0/model.safetensors").exists() and (tmp_path / "ens/ensemble.json").exists()
    loaded = Ensemble.load(tmp_path / "ens")
    assert len(loaded) == 3
    for m, n in zip(ensemble.members, loaded.members):
        assert all(torch.equal(v, n.state_dict()[k]) for k, v in m.state_dict().items())
    for a, b in zip(ensemble.predict(PROMPTS, FLOWS), loaded.predict(PROMPTS, FLOWS)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # same weights; float32 kernels may differ in the last bit


def test_load_of_a_non_ensemble_names_the_folder(tmp_path):
    with pytest.raises(RewardLoadError, match="dvc repro reward"):
        Ensemble.load(tmp_path)


def test_mismatched_inputs_are_rejected(ensemble):
    with pytest.raises(ValueError, match="one flow per prompt"):
        ensemble.predict(PROMPTS, FLOWS[:2])
