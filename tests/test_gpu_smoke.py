"""bench gpu_smoke at the reduced shape on the CPU (the same code as the paper shape on a GPU), and the trainable rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import gpu_smoke  # noqa: E402
from bench.__main__ import discover  # noqa: E402


@pytest.fixture(scope="module")
def figures():
    return gpu_smoke.run("reduced", device="cpu")


def test_every_stage_reports_time_throughput_and_memory(figures):
    assert "gpu_smoke" in discover()
    assert list(figures["stages"]) == ["reward", "sft", "grpo", "guided_eval"]
    for name, stage in figures["stages"].items():
        assert stage["step_s"] > 0 and stage["tokens_per_s"] > 0 and stage["peak_mem_gb"] >= 0, name
    assert figures["stages"]["grpo"]["generation_s"] > 0
    assert figures["device"] == "cpu" and "no GPU" in figures["note"]
    rows = gpu_smoke.rows(figures)
    assert rows[0][3].startswith("no") and any(r[0].startswith("sft:") for r in rows)


def test_only_lora_and_the_new_token_rows_train():
    shape = gpu_smoke.SHAPES["reduced"]
    model, vocab = gpu_smoke._policy(shape, torch.device("cpu"), bf16=False)
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert trainable and all("lora_" in n or "trainable_tokens_delta" in n for n in trainable)
    deltas = [n for n in trainable if "trainable_tokens_delta" in n]
    assert len(deltas) == 2 and all(params[n].shape == (shape.new_tokens, 64) for n in deltas)  # embed + untied lm_head
    before = {n: p.detach().clone() for n, p in params.items()}
    gpu_smoke.sft_stage(model, vocab, shape, torch.device("cpu"), bf16=False)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert (
        set(deltas) <= moved <= trainable
    )  # the new rows learnt; every frozen weight (old rows included) is unchanged
