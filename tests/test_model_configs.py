"""`source: random`: the paper models at real shapes from the shipped config JSONs (no weights, no hub)."""

from __future__ import annotations

import json

import pytest
import torch

from flowrl.model_configs import ModelConfigError, build_random_model, shipped
from flowrl.params.model import PolicyConfig, RewardConfig
from flowrl.policy.loading import load_base_model
from flowrl.reward.encoder import build_surrogate, load_reward_tokenizer

TINY_LLAMA = {
    "model_type": "llama",
    "vocab_size": 300,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "tie_word_embeddings": False,
}
TINY_MODERNBERT = {
    "model_type": "modernbert",
    "vocab_size": 300,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "global_attn_every_n_layers": 3,
    "local_attention": 16,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "cls_token_id": 1,
    "sep_token_id": 2,
}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_models_at_real_shapes_on_the_meta_device():
    assert {"answerdotai/ModernBERT-base", "meta-llama/Llama-3.1-8B", "HuggingFaceTB/SmolLM2-135M-Instruct"} == set(
        shipped()
    )
    policy = build_random_model("meta-llama/Llama-3.1-8B", "causal-lm", device="meta")
    assert n_params(policy) == 8_030_261_248  # the published 8.03B
    assert policy.get_input_embeddings().weight.shape == (128256, 4096) and policy.get_input_embeddings().weight.is_meta
    reward = build_random_model("answerdotai/ModernBERT-base", "regression", device="meta")
    assert 149e6 < n_params(reward) < 151e6 and reward.config.num_labels == 1  # 149M encoder + the 1-output head
    smol = build_random_model("HuggingFaceTB/SmolLM2-135M-Instruct", "causal-lm", device="meta")
    assert n_params(smol) == 134_515_008  # the packaged cpu-profile GGUF's model (tied embeddings)


def test_random_source_builds_policy_and_surrogate_from_a_config_file(tmp_path):
    (tmp_path / "llama.json").write_text(json.dumps(TINY_LLAMA))
    (tmp_path / "bert.json").write_text(json.dumps(TINY_MODERNBERT))
    cfg = PolicyConfig(source="random", model=str(tmp_path / "llama.json"))
    a, b = load_base_model(cfg, vocab_size=300, seed=3), load_base_model(cfg, vocab_size=300, seed=3)
    assert type(a).__name__ == "LlamaForCausalLM" and a.config.hidden_size == 32
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))  # same seed, same weights
    surrogate = build_surrogate(
        RewardConfig(source="random", model=str(tmp_path / "bert.json")), vocab_size=310, seed=1
    )
    assert type(surrogate).__name__ == "ModernBertForSequenceClassification"
    assert surrogate.get_input_embeddings().num_embeddings == 310  # grown to the (extended) tokenizer
    out = surrogate(input_ids=torch.tensor([[1, 5, 9, 2]]), labels=torch.tensor([0.5]))
    assert out.logits.shape == (1, 1) and out.loss.requires_grad


@pytest.mark.parametrize(
    "model, match",
    [(None, "empty"), ("meta-llama/Llama-9-1T", "one of .*Llama-3.1-8B"), ("no/such.json", "no shipped config")],
)
def test_random_source_errors_name_the_setting_and_the_fix(model, match, tmp_path):
    with pytest.raises(ModelConfigError, match=match) as err:
        load_base_model(PolicyConfig(source="random", model=model), vocab_size=10)
    assert "policy.model" in str(err.value)
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ModelConfigError, match="not a transformers config.json"):
        build_surrogate(RewardConfig(source="random", model=str(bad)), vocab_size=10, seed=0)


def test_random_reward_tokenizer_feeds_a_modernbert_surrogate_and_the_prompt_encoder(tmp_path):
    from flowrl.reward.prompt_cache import PromptEmbedder

    (tmp_path / "bert.json").write_text(json.dumps(TINY_MODERNBERT))
    cfg = RewardConfig(source="random", model=str(tmp_path / "bert.json"))
    tokenizer = load_reward_tokenizer(cfg)  # MiniLM's, packaged: no download
    batch = tokenizer(["[PROMPT] a fox [FLOW] KSampler steps=20"], return_tensors="pt")
    assert "token_type_ids" not in batch  # ModernBERT takes none
    surrogate = build_surrogate(cfg, vocab_size=len(tokenizer), seed=0)
    assert surrogate(**batch).logits.shape == (1, 1)
    vectors = PromptEmbedder(cfg, max_length=16).embed(["a fox", "a castle at night"])
    assert vectors.shape == (2, 32) and abs(float((vectors**2).sum(1).mean()) - 1) < 1e-4
