"""PlainBert (flowrl.reward.plain_bert) computes BertModel's hidden states, and the prompt encoder uses it for
MiniLM with the same embeddings as through transformers."""

from __future__ import annotations

import json

import numpy as np
import torch
from transformers import BertConfig, BertModel

from flowrl.params.model import RewardConfig
from flowrl.reward.plain_bert import PlainBert, plain_bert_problem
from flowrl.reward.prompt_cache import PromptEmbedder


def test_plain_bert_gives_the_hidden_states_of_transformers(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40)
    model = BertModel(config, add_pooling_layer=False).eval()
    model.save_pretrained(tmp_path)
    assert plain_bert_problem(tmp_path) is None
    ids = torch.tensor([[2, 5, 7, 9, 3], [2, 6, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    types = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]])
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    out = PlainBert.from_folder(tmp_path)(ids, mask, types).last_hidden_state
    torch.testing.assert_close(out[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=1e-4)


def test_what_plain_bert_does_not_cover_is_named(tmp_path):
    assert "no config.json" in plain_bert_problem(tmp_path)
    BertModel(
        BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    ).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    assert "positions are not absolute" in plain_bert_problem(tmp_path)


def test_minilm_prompt_embeddings_are_those_of_transformers():
    prompts = ["a castle at dawn, dramatic clouds", "Portrait, 85mm!! ünïcode 日本", "x " * 300, "cat"]
    plain = PromptEmbedder(RewardConfig(source="minilm"), 128)
    got = plain.embed(prompts)
    assert isinstance(plain._encoder[1], PlainBert)
    reference = PromptEmbedder(RewardConfig(source="minilm"), 128)
    reference._encoder = reference._transformers_encoder()
    np.testing.assert_allclose(got, reference.embed(prompts), atol=1e-5)
