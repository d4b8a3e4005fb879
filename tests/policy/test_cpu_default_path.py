"""The `cpu` profile's own path (policy.source: scratch), at toy sizes: the BPE tokenizer trained on the SFT corpus,
full-weight SFT saved and loaded back, and the GRPO LoRA merged for sampling on that full-weight policy."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file

from flowrl.io import read_json
from flowrl.policy import sft
from flowrl.policy.flow_tokenizer import EOS, TokenizerTrainingError, train_bpe_tokenizer
from flowrl.policy.grpo_config import lora_config
from flowrl.policy.grpo_trainer import merged_for_sampling
from flowrl.policy.loading import load_sft_merged, load_sft_policy
from tests.policy.test_sft import flows, write_stage_inputs  # noqa: F401 - flows is a fixture

CORPUS = [
    "a red fox in a neon city",
    "KSampler steps=20 cfg=7.0 sampler=euler",
    "EmptyLatentImage width=1024 height=1024",
] * 20


def test_bpe_tokenizer_is_trained_to_size_and_deterministic():
    tok = train_bpe_tokenizer(CORPUS, 300)
    assert len(tok) == 300 and tok.eos_token == tok.pad_token == EOS
    assert tok.get_vocab() == train_bpe_tokenizer(CORPUS, 300).get_vocab()
    text = "KSampler steps=20 cfg=7.0"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text and len(ids) < len(text)  # 256 bytes + 43 merges learnt from the corpus
    with pytest.raises(TokenizerTrainingError, match="rerun the encode stage"):
        train_bpe_tokenizer(["", ""], 300)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, flows, tiny_params):  # noqa: F811
    """sft.run on a scratch policy: a 300-entry BPE and a one-layer Llama, every weight trained for 4 steps."""
    params = tiny_params
    policy = params.policy.model_copy(
        update={
            "source": "scratch",
            "scratch": params.policy.scratch.model_copy(
                update={
                    "hidden_size": 32,
                    "intermediate_size": 64,
                    "num_hidden_layers": 1,
                    "num_attention_heads": 4,
                    "num_key_value_heads": 4,
                    "vocab_size": 300,
                }
            ),
        }
    )
    params = params.model_copy(
        update={"policy": policy, "sft": params.sft.model_copy(update={"max_steps": 4, "n_validity": 0})}
    )
    root = tmp_path_factory.mktemp("scratch")
    write_stage_inputs(root, flows)
    return root, params, sft.run(params, root)


def test_full_weight_sft_saves_every_weight_and_no_adapter(scratch):
    root, params, metrics = scratch
    out = root / sft.OUT_DIR
    assert metrics["n_steps"] == 4 and read_json(out / "policy.json")["full_weights"] is True
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    assert read_json(out / "policy.json")["base_vocab_size"] == 300


def test_a_full_weight_policy_loads_back_as_saved(scratch):
    root, _, _ = scratch
    out = root / sft.OUT_DIR
    model, tokenizer = load_sft_policy(out)
    assert not hasattr(model, "peft_config") and len(tokenizer) == model.get_input_embeddings().weight.shape[0]
    saved = load_file(str(out / "model.safetensors"))
    state = model.state_dict()
    assert saved and all(torch.equal(state[k], v) for k, v in saved.items())
    merged, _ = load_sft_merged(out)  # what GRPO and guided sampling start from: the same weights, nothing to merge
    ids = tokenizer("a red fox", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, model(ids).logits)


def test_the_grpo_lora_on_a_full_weight_policy_merges_for_sampling_and_back(scratch):
    root, params, _ = scratch
    base, tokenizer = load_sft_merged(root / sft.OUT_DIR)
    model = get_peft_model(base, lora_config(params.grpo))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)  # as after some GRPO steps
    before = {n: p.clone() for n, p in model.named_parameters() if ".base_layer." in n}
    ids = tokenizer("a red fox", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        through_adapter = model(ids).logits
        with merged_for_sampling(model) as merged:
            assert merged
            torch.testing.assert_close(model(ids).logits, through_adapter, atol=1e-5, rtol=1e-4)
    for name, p in model.named_parameters():
        if name in before:
            torch.testing.assert_close(p, before[name], atol=1e-6, rtol=0)
