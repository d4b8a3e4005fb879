"""The cost estimate: the paper profile on one 80 GB GPU, and the estimate against a measured CPU peak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowrl.cli.cost import estimate_stages
from flowrl.params.model import load_params
from flowrl.runtime.memory import GB, format_estimates, lora_params, token_row_params

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter with glibc's mmap threshold fixed, so that freed tensors go back to the system and
# each block's resident-set peak (VmHWM) is its own.
PROBE = r"""
import contextlib, json, torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM
from flowrl.params.model import load_params
from flowrl.cli.cost import estimate_stages
from flowrl.runtime.memory import PeakMemory, estimate_training, lora_params, token_row_params
from flowrl.policy.loading import build_tiny_model

def step(model, opt, ids, bf16=False):
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)

def measure(build, shape, bf16=False, steps=2):
    warm, wopt = build(); step(warm, wopt, torch.randint(0, 8, (1, 8)), bf16); del warm, wopt  # kernels, lazy init
    with PeakMemory("cpu") as peak:
        model, opt = build()
        for _ in range(steps):
            step(model, opt, torch.randint(0, 1000, shape), bf16)
    assert peak.supported
    return peak.bytes

# 1. LoRA r=16 + trainable new token rows (the paper setting) on a small Llama, fp32, checkpointing
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=8192, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, tie_word_embeddings=False)
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
rows = list(range(8000, 8192))
def lora():
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=16, lora_alpha=16, target_modules=targets,
                           trainable_token_indices={"embed_tokens": rows, "lm_head": rows}))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    return model.train(), torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
ref = LlamaForCausalLM(cfg)
est = estimate_training("sft", ref, lora_params(ref, 16, targets) + token_row_params(ref, len(rows), "new"), 4, 256,
                        weight_bytes=4, act_bytes=4, checkpointing=True, materialized_attention=True)
out = {"lora": [est.total, measure(lora, (4, 256))]}

# 2. the cpu profile's sft stage: its scratch Llama, all weights, sft.batch_size x sft.max_length, its bf16 setting
#    (bf16 autocast where the CPU computes in bf16, as the stage's trainer does)
p = load_params("params.yaml", profile="cpu")
vocab = p.policy.scratch.vocab_size + 210
def scratch():
    model = build_tiny_model(p.policy, vocab, 0).train()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)
est = estimate_stages(p, new_tokens=210, gradient_checkpointing=False, materialized_attention=True)["sft"]
assert est.micro_batch == p.sft.batch_size
# one step (the slow part of this test): its peak lacks only the AdamW moments (32 MB of 1.3 GB)
out["cpu_profile"] = [est.total, measure(scratch, (p.sft.batch_size, p.sft.max_length), p.policy.bf16, steps=1)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def paper():
    return estimate_stages(load_params(REPO / "params.yaml", profile="paper"), new_tokens=210)


def test_paper_sft_fits_one_80gb_gpu_with_gradient_checkpointing(paper):
    sft = paper["sft"]
    assert sft.fits(80 * GB) and sft.gradient_checkpointing and sft.seq_len == 2048
    assert 40e6 < sft.trainable < 45e6  # LoRA r=16 on 7 projections (41.9M) + 210 new rows of embed and head
    assert (
        sft.micro_batch >= 4 and 32 % sft.micro_batch == 0
    )  # params.yaml: 8 x 4 accumulated (batch 32 alone needs ~196 GB)
    assert paper["reward"].fits(80 * GB) and paper["grpo"].fits(80 * GB)
    table = format_estimates(paper)
    assert "sft" in table and "DOES NOT FIT" not in table


def test_full_token_rows_train_a_billion_parameters(paper):
    full = estimate_stages(load_params(REPO / "params.yaml", profile="paper"), new_tokens=210, token_rows="full")["sft"]
    assert full.trainable > 1.0e9 > 20 * paper["sft"].trainable  # today's modules_to_save: 2 x 128256 x 4096 rows
    assert full.trainable_state > 16 * GB


def test_lora_and_token_row_counts_on_a_small_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=100,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            tie_word_embeddings=False,
        )
    )
    # q,o: 16->16; k,v: 16->8; gate,up: 16->32; down: 32->16
    assert lora_params(
        model, 4, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    ) == 2 * 4 * (32 + 24 + 24 + 32 + 48 + 48 + 48)
    assert token_row_params(model, 5, "new") == 2 * 5 * 16 and token_row_params(model, 5, "full") == 2 * 100 * 16


def test_estimate_is_within_30_percent_of_the_measured_cpu_peak():
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("/proc/self/clear_refs is not writable here: the CPU peak cannot be measured")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PROBE], capture_output=True, text=True, env=env, timeout=240, cwd=REPO
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for name, (estimated, measured) in json.loads(out.stdout.strip().splitlines()[-1]).items():
        assert 0.7 < estimated / measured < 1.3, (name, estimated, measured)


def test_stage_start_applies_the_device_setting_and_prints_the_estimate(capsys, monkeypatch):
    from flowrl.cli.cost import stage_start
    from flowrl.runtime import device

    monkeypatch.delenv(device.ENV, raising=False)
    params = load_params(REPO / "params.yaml", profile="paper").model_copy(update={"device": "cpu"})
    try:
        est = stage_start(params, "sft", REPO / "no-such-root")
        assert device.current() == "cpu"
    finally:
        device.configure(None)
    out = capsys.readouterr().out
    assert (
        est is not None and est.gradient_checkpointing and 40e6 < est.trainable < 45e6
    )  # paper: token rows new, checkpointing
    assert out.startswith("sft on cpu: estimated memory") and "total GB" in out
