"""GRPO samples from the LoRA merged into the weights only when they are fp32: merging and unmerging bf16
weights at every step drifts the policy and the KL reference (trl issue #6688)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from flowrl.policy.decoding.sampling import SamplingConfig
from flowrl.policy.grpo_trainer import FlowGRPOTrainer, merged_for_sampling


def _lora_model(dtype: torch.dtype):
    torch.manual_seed(0)
    base = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
        )
    )
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)  # a trained adapter (a fresh one adds zero)
    return model.to(dtype)


def _base_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if ".base_layer." in n}


def _changed(model, before: dict[str, torch.Tensor]) -> list[str]:
    return [n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])]


def test_fp32_merges_for_sampling_and_gets_its_weights_back():
    model = _lora_model(torch.float32)
    before, ids = _base_weights(model), torch.randint(0, 64, (2, 8))
    with torch.no_grad():
        through_adapter = model(ids).logits
        with merged_for_sampling(model) as merged:
            assert merged and _changed(model, before)  # the adapter is in the weights
            torch.testing.assert_close(model(ids).logits, through_adapter, atol=1e-5, rtol=1e-4)
    for name, p in model.named_parameters():
        if name in before:
            torch.testing.assert_close(p, before[name], atol=1e-6, rtol=0)


def test_bf16_samples_through_the_adapter_and_keeps_its_weights_bit_exact():
    model = _lora_model(torch.bfloat16)
    before = _base_weights(model)
    with merged_for_sampling(model) as merged:
        assert not merged
    assert _changed(model, before) == []
    model.merge_adapter()
    model.unmerge_adapter()
    assert _changed(model, before), "a bf16 merge round trip should drift; if it no longer does, the guard may go"


@pytest.mark.parametrize(("dtype", "merges"), [(torch.bfloat16, 0), (torch.float32, 1)])
def test_the_trainer_merges_only_an_fp32_policy(dtype, merges, monkeypatch):
    """FlowGRPOTrainer's sampling step on a LoRA policy of each precision."""
    model = _lora_model(dtype)
    calls = []
    merge = model.merge_adapter
    monkeypatch.setattr(model, "merge_adapter", lambda *a, **k: (calls.append(1), merge(*a, **k)))
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=1, decode=lambda ids, **_: " ".join(map(str, ids)))
    trainer = SimpleNamespace(
        args=SimpleNamespace(use_vllm=False),
        _tokenizer=tok,
        model=model,
        logits_processor=[],
        renormalize=False,
        accelerator=SimpleNamespace(device=torch.device("cpu"), unwrap_model=lambda m: m),
        sampling=SamplingConfig(max_new_tokens=4, batch_size=2),
        state=SimpleNamespace(global_step=0),
    )
    completion_ids, _ = FlowGRPOTrainer._generate_single_turn(trainer, [[2, 3, 4], [5, 6]], None, None, 2)
    assert len(calls) == merges and len(completion_ids) == 2
