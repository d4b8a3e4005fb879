"""The sft stage with `sft.pairing: reward` and prompt codes (the cpu default), on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from flowrl.io import write_jsonl
from flowrl.params.model import RewardConfig
from flowrl.pipeline.stages import EncodeFiles, FlowsFiles, TripletsFiles
from flowrl.policy import sft
from flowrl.policy.loading import load_sft_policy
from flowrl.policy.prompt_codes import PromptCodes, coded_prompts
from flowrl.reward.prompt_cache import PromptEmbedder
from tests.policy.test_sft import flows, write_stage_inputs  # noqa: F401 (the module fixture)


class FoxLikesFirstFlow:
    """A fake surrogate ensemble: prompts with 'fox' score the first flow high, the others the second."""

    tau = 0.5

    def __init__(self, flows: list[str]):
        self.flows = flows
        self.featurizer = type("F", (), {"embedder": PromptEmbedder(RewardConfig(source="tiny"), 32)})()

    def predict(self, prompts, flows, progress=False):
        want = [self.flows[0] if "fox" in p else self.flows[1] for p in prompts]
        return torch.tensor([1.0 if f == w else 0.0 for f, w in zip(flows, want)]), torch.full((len(flows),), 0.1)


@pytest.fixture(scope="module")
def trained(tiny_params, flows, tmp_path_factory):
    root = tmp_path_factory.mktemp("sft_reward")
    write_stage_inputs(root, flows, n_pairs=96)
    prompts = [f"a red fox {i}" for i in range(24)] + [f"a neon city {i}" for i in range(24)]
    write_jsonl(root / TripletsFiles.train, [{"prompt": p, "flow": flows[0], "score": 0.0} for p in prompts])
    write_jsonl(root / FlowsFiles.augmented, [{"id": f"f{i}", "base_id": "b"} for i in range(len(flows))])
    write_jsonl(root / EncodeFiles.flows, [{"id": f"f{i}", "text": f, "policy_text": f} for i, f in enumerate(flows)])
    params = tiny_params.model_copy(
        update={
            "sft": tiny_params.sft.model_copy(
                update={"pairing": "reward", "pairing_temperature": 0.1, "pairing_random_share": 0.0, "n_train": None}
            ),
            "policy": tiny_params.policy.model_copy(update={"prompt_codes": [2, 3]}),
        }
    )
    ensemble = FoxLikesFirstFlow(sorted(flows))
    original = sft.load_reward_ensemble
    sft.load_reward_ensemble = lambda root, why: ensemble
    try:
        return root, sft.run(params, root), ensemble
    finally:
        sft.load_reward_ensemble = original


def test_pairs_come_from_the_ensemble_and_codes_are_saved(trained):
    root, metrics, _ = trained
    assert (
        metrics["n_code_tokens"] == 5.0
        and metrics["pairing_prompts"] == 48.0
        and metrics["pairing_random_share"] == 0.0
    )
    assert metrics["pairing_mean_z"] > 0.5  # the drawn flows are the ones the ensemble scores high for their prompt
    codes = PromptCodes.load(root / sft.OUT_DIR)
    assert codes is not None and [len(c) for c in codes.centroids] == [2, 3]
    assert json.loads((root / sft.OUT_DIR / "prompt_codes.json").read_text())["encoder"]["source"] == "tiny"


def test_the_policy_reads_code_tokens_as_whole_tokens(trained):
    root, _, _ = trained
    model, tokenizer = load_sft_policy(root / sft.OUT_DIR)
    codes = PromptCodes.load(root / sft.OUT_DIR)
    coded = coded_prompts(codes, ["a red fox in the snow"])[0]
    prefix = coded.split(" ", 1)[0]
    ids = tokenizer(prefix, add_special_tokens=False).input_ids
    assert len(ids) == 2 and tokenizer.convert_ids_to_tokens(ids) == [
        prefix[: prefix.index(">") + 1],
        prefix[prefix.index(">") + 1 :],
    ]
    assert max(ids) < model.get_input_embeddings().weight.shape[0]


def test_reward_pairing_without_a_reward_ensemble_names_the_stage(tiny_params, flows, tmp_path):
    write_stage_inputs(tmp_path, flows)
    params = tiny_params.model_copy(update={"sft": tiny_params.sft.model_copy(update={"pairing": "reward"})})
    with pytest.raises(sft.SFTDataError, match=r"dvc repro reward"):
        sft.run(params, tmp_path)
