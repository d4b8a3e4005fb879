"""sft.token_rows: new -- only the flow-token rows of embed_tokens / lm_head train (peft trainable_token_indices)."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from flowrl.params.model import SFTConfig
from flowrl.policy import sft
from flowrl.runtime.memory import lora_params, token_row_params

BASE_VOCAB, NEW = 40, 8


def tiny_llama(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=BASE_VOCAB,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            tie_word_embeddings=tied,
        )
    )
    model.resize_token_embeddings(BASE_VOCAB + NEW, mean_resizing=False)  # the flow tokens' rows
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_only_the_new_rows_receive_gradients(tied):
    cfg = SFTConfig(lora_r=4, lora_alpha=4, token_rows="new")
    model = tiny_llama(tied)
    ids = sft.new_token_ids(model, BASE_VOCAB)
    assert ids == list(range(BASE_VOCAB, BASE_VOCAB + NEW)) and sft.is_tied(model) is tied
    emb0 = model.get_input_embeddings().weight.detach().clone()
    head0 = model.get_output_embeddings().weight.detach().clone()
    peft_model = get_peft_model(model, sft.lora_config(cfg, ids, tied))

    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or "trainable_tokens_delta" in n for n in trainable)
    deltas = {n: p for n, p in trainable.items() if "trainable_tokens_delta" in n}
    assert len(deltas) == (1 if tied else 2) and all(p.shape == (NEW, 16) for p in deltas.values())
    # the cost estimate counts what peft trains
    assert sum(p.numel() for p in trainable.values()) == lora_params(
        tiny_llama(tied), 4, cfg.target_modules
    ) + token_row_params(tiny_llama(tied), NEW, "new")

    opt = torch.optim.SGD(list(trainable.values()), lr=0.5)
    batch = torch.tensor([[1, 5, 41, 44, 7, 47, 2, 40]])  # old and new tokens, in and out
    for _ in range(3):
        peft_model(input_ids=batch, labels=batch).loss.backward()
        frozen = [p for n, p in peft_model.named_parameters() if not p.requires_grad]
        assert all(p.grad is None for p in frozen)  # the 40 old rows (and every base weight) get no gradient
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in deltas.values())
        opt.step()
        opt.zero_grad(set_to_none=True)

    merged = peft_model.merge_and_unload()
    emb, head = merged.get_input_embeddings().weight, merged.get_output_embeddings().weight
    assert torch.equal(emb[:BASE_VOCAB], emb0[:BASE_VOCAB]) and torch.equal(head[:BASE_VOCAB], head0[:BASE_VOCAB])
    assert not torch.equal(emb[BASE_VOCAB:], emb0[BASE_VOCAB:])  # the new rows learnt
    if not tied:
        assert not torch.equal(head[BASE_VOCAB:], head0[BASE_VOCAB:])


def test_full_rows_and_callers_without_ids_keep_the_full_copies():
    ids = list(range(BASE_VOCAB, BASE_VOCAB + NEW))
    full = sft.lora_config(SFTConfig(token_rows="full"), ids)
    assert set(full.modules_to_save) == {"lm_head", "embed_tokens"} and not full.trainable_token_indices
    no_ids = sft.lora_config(SFTConfig(token_rows="new"))
    assert set(no_ids.modules_to_save) == {"lm_head", "embed_tokens"} and not no_ids.trainable_token_indices
    new = sft.lora_config(SFTConfig(token_rows="new"), ids, tied=False)
    assert not new.modules_to_save and new.trainable_token_indices == {"embed_tokens": ids, "lm_head": ids}


def test_the_sft_trainer_trains_the_new_rows_under_gradient_checkpointing(tiny_params, base_tokenizer, tmp_path):
    """trl's SFTTrainer with the stage's LoRA config: checkpointing on, only LoRA and the new rows move."""
    from flowrl.encoding.vocab import extend_tokenizer
    from flowrl.policy.loading import build_tiny_model

    base_vocab = len(base_tokenizer)
    model = build_tiny_model(tiny_params.policy, base_vocab, seed=0)
    extend_tokenizer(base_tokenizer, ["KSamplerXYZ", "CheckpointLoaderXYZ", "euler_xyz"], model)
    emb0 = model.get_input_embeddings().weight.detach().clone()
    cfg = tiny_params.sft.model_copy(
        update={"gradient_checkpointing": True, "token_rows": "new", "max_steps": 2, "save_steps": 10}
    )
    rows = [{"prompt": "a red fox", "completion": "KSamplerXYZ euler_xyz CheckpointLoaderXYZ"}] * 8
    trainer = sft.build_trainer(
        model, base_tokenizer, sft.to_dataset(rows), None, cfg, tiny_params.policy, tmp_path, 0, base_vocab=base_vocab
    )
    assert trainer.args.gradient_checkpointing
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("trainable_tokens_delta" in n for n in trainable)
    assert all("lora_" in n or "trainable_tokens_delta" in n for n in trainable)
    trainer.train()
    emb = trainer.model.merge_and_unload().get_input_embeddings().weight
    assert torch.equal(emb[:base_vocab], emb0[:base_vocab]) and not torch.equal(emb[base_vocab:], emb0[base_vocab:])
