"""Flow vocabulary and tokenizer extension on a tiny offline tokenizer and model."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from flowrl.encoding.codec import encode_flow
from flowrl.encoding.schema import infer_schema
from flowrl.encoding.vocab import extend_tokenizer, flow_tokens
from tests.encoding.graphs import T2I


def _tiny_tokenizer() -> PreTrainedTokenizerFast:
    chars = sorted(set(' \n=@.,_-"\\<>0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'))
    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(["[UNK]", *chars])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", clean_up_tokenization_spaces=False)


def test_flow_tokens_cover_classes_names_models_and_refs():
    tokens = flow_tokens(infer_schema([T2I]))
    assert tokens == sorted(set(tokens))
    for expected in (
        "KSampler",
        "CLIPTextEncode",
        " steps=",
        " ckpt_name=",
        "sd_xl_base_1.0.safetensors",
        "euler",
        "normal",
        "@1",
        "@7",
        "<prompt>",
    ):
        assert expected in tokens
    assert "@8" not in tokens and "ComfyUI" not in tokens  # not a component field
    assert flow_tokens(infer_schema([T2I])) == tokens


def test_extend_tokenizer_makes_single_ids_and_grows_embeddings():
    tok = _tiny_tokenizer()
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            tie_word_embeddings=False,
        )
    )
    old_rows = model.get_input_embeddings().weight.detach().clone()
    tokens = flow_tokens(infer_schema([T2I]))
    added = extend_tokenizer(tok, tokens, model)
    assert added == len(tokens) and len(tok) == len(old_rows) + added
    for t in tokens:
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == len(tok) == model.get_output_embeddings().weight.shape[0]
    assert torch.equal(emb[: len(old_rows)], old_rows)
    for t in ("KSampler", " steps=", "@7"):  # a new row is the mean of its text's old pieces (one per character here)
        pieces = [tok.convert_tokens_to_ids(c) for c in t]
        assert torch.allclose(emb[tok.convert_tokens_to_ids(t)], old_rows[pieces].mean(0)), t
    out = model.get_output_embeddings().weight  # untied: the output rows get the same start from their own old rows
    assert torch.allclose(
        out[tok.convert_tokens_to_ids("euler")], out[[tok.convert_tokens_to_ids(c) for c in "euler"]].mean(0)
    )
    assert extend_tokenizer(tok, tokens, model) == 0  # idempotent


@pytest.mark.parametrize("skip", [False, True])
def test_flow_text_decodes_back_exactly(skip):
    tok = _tiny_tokenizer()
    extend_tokenizer(tok, flow_tokens(infer_schema([T2I])))
    text = encode_flow(T2I)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(text) / 3  # flow tokens carry most of the text
    assert tok.decode(ids, skip_special_tokens=skip) == text


def test_tokens_are_written_forms():
    graph = {"1": {"class_type": "Odd Loader", "inputs": {"ckpt_name": 'SD 1.5\\my "best".ckpt', "weird name": 1}}}
    tokens = flow_tokens(infer_schema([graph]))
    text = encode_flow(graph)
    assert '"Odd Loader"' in tokens and ' "weird name"=' in tokens
    for t in tokens:
        if not t.startswith("@") and t != "<prompt>":
            assert t in text, t
