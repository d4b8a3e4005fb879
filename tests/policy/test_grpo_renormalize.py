"""GRPO scores a completion under the distribution it was sampled from: the model's, renormalised over what the
constraint allowed (issue #23), in the loss and in the KL alike."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from flowrl.policy.grpo_trainer import FlowGRPOTrainer, masked_token_logps


def _model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=32,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    ).eval()


def _trainer(allowed):
    return SimpleNamespace(
        _allowed=allowed, temperature=0.9, accelerator=SimpleNamespace(autocast=contextlib.nullcontext)
    )


def test_masked_logps_are_a_distribution_over_the_allowed_tokens():
    logits = torch.randn(2, 3, 8)
    allowed = torch.rand(2, 3, 8) > 0.5
    allowed[..., 0] = True
    ids = torch.zeros(2, 3, dtype=torch.long)
    logps, entropy = masked_token_logps(logits, ids, allowed)
    full = logits.masked_fill(~allowed, float("-inf")).log_softmax(-1)
    torch.testing.assert_close(logps, full[..., 0])
    assert torch.isfinite(entropy).all() and (entropy >= 0).all()
    one = torch.zeros(1, 1, 8, dtype=torch.bool)
    one[..., 3] = True  # a forced token: probability 1, no entropy
    lp, h = masked_token_logps(torch.randn(1, 1, 8), torch.tensor([[3]]), one)
    assert float(lp) == 0.0 and float(h) == 0.0


def test_the_trainer_renormalises_over_the_recorded_masks():
    model = _model()
    ids = torch.randint(0, 32, (2, 7))
    mask = torch.ones_like(ids)
    allowed = torch.zeros(2, 3, 32, dtype=torch.bool)
    allowed[..., :5] = True
    allowed[:, :, 0] = True
    ids[:, -3:] = torch.tensor([[1, 2, 3], [4, 0, 1]])
    logps, entropy, _ = FlowGRPOTrainer._get_per_token_logps_and_entropies(
        _trainer(allowed), model, ids, mask, 3, compute_entropy=True
    )
    with torch.no_grad():
        logits = model(ids).logits[:, -4:-1] / 0.9
    expected = logits.masked_fill(~allowed, float("-inf")).log_softmax(-1).gather(-1, ids[:, -3:, None]).squeeze(-1)
    torch.testing.assert_close(logps, expected)
    unmasked = logits.log_softmax(-1).gather(-1, ids[:, -3:, None]).squeeze(-1)
    assert (logps > unmasked).all()  # the disallowed tokens' mass is given back to the allowed ones
    assert entropy.shape == (2, 3)


def test_the_loss_reads_the_mask_of_its_own_rows(monkeypatch):
    from trl import GRPOTrainer

    seen = []
    monkeypatch.setattr(
        GRPOTrainer, "_compute_loss", lambda self, model, inputs: seen.append(self._allowed) or torch.tensor(0.0)
    )
    trainer = object.__new__(FlowGRPOTrainer)  # no __init__: only the loss hook runs
    trainer._allowed = None
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    trainer._compute_loss(None, {"allowed_mask": mask})
    assert seen[0] is mask and trainer._allowed is None  # the batch's own rows, cleared afterwards
