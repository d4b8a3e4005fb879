"""Loading each encoder kind: tiny (random BERT), minilm (real weights), dir; config errors."""

from __future__ import annotations

import pytest
import torch

from flowrl.errors import ConfigError
from flowrl.params.model import RewardConfig, resolve
from flowrl.reward.encoder import RewardLoadError, build_surrogate, load_reward_tokenizer, minilm_path


@pytest.fixture(scope="module")
def minilm():
    cfg = RewardConfig(source="minilm")
    tokenizer = load_reward_tokenizer(cfg)
    return tokenizer, build_surrogate(cfg, len(tokenizer), seed=0)


def test_tiny_is_small_random_bert_with_minilm_tokenizer():
    cfg = RewardConfig(source="tiny")
    tokenizer = load_reward_tokenizer(cfg)
    model = build_surrogate(cfg, len(tokenizer), seed=0)
    assert (
        model.config.hidden_size == cfg.tiny.hidden_size
        and model.config.num_hidden_layers == cfg.tiny.num_hidden_layers
    )
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    again = build_surrogate(cfg, len(tokenizer), seed=0)
    other = build_surrogate(cfg, len(tokenizer), seed=1)
    w = lambda m: m.classifier.weight  # noqa: E731
    assert torch.equal(w(model), w(again)) and not torch.equal(w(model), w(other))


def test_minilm_loads_pretrained_weights(minilm):
    tokenizer, model = minilm
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    from safetensors.torch import load_file

    saved = load_file(minilm_path() / "model.safetensors")
    key = next(k for k in saved if k.endswith("embeddings.word_embeddings.weight"))
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, saved[key])
    enc = tokenizer(["[PROMPT] a cat [FLOW] n1 KSampler"], return_tensors="pt")
    with torch.no_grad():
        assert model(**enc).logits.shape == (1, 1)


def test_minilm_embeddings_grow_for_added_tokens(minilm):
    tokenizer, _ = minilm
    model = build_surrogate(RewardConfig(source="minilm"), len(tokenizer) + 3, seed=0)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) + 3


def test_dir_source_without_config_names_the_folder(tmp_path):
    with pytest.raises(RewardLoadError, match=str(tmp_path)):
        load_reward_tokenizer(RewardConfig(source="dir", model=str(tmp_path)))


def test_hub_source_needs_model_id():
    with pytest.raises(ConfigError, match="reward.model"):
        resolve({"reward": {"source": "hub"}})


@pytest.mark.parametrize("profile, source", [("tiny", "tiny"), ("cpu", "minilm"), ("paper", "hub")])
def test_profiles_pick_their_encoder(profile, source):
    from pathlib import Path

    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    params = resolve(raw, profile)
    assert params.reward.source == source
    if profile == "paper":
        assert params.reward.model == "answerdotai/ModernBERT-base"
        assert (params.reward.n_models, params.reward.n_prefix_models, params.reward.epochs) == (7, 5, 10)
        assert (params.reward.batch_size, params.reward.max_length) == (128, 4096)
