"""The sft stage on the tiny profile: loss goes down, completion-only labels, a loadable adapter, resume."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.codec import encode_flow
from flowrl.encoding.schema import Schema, SchemaError, infer_schema
from flowrl.encoding.vocab import flow_tokens
from flowrl.io import read_json, write_json, write_jsonl
from flowrl.pipeline.stages import SFTFiles
from flowrl.policy import sft
from flowrl.policy.decoding.constrained import SCHEMA_FILE
from flowrl.policy.loading import build_tiny_model, load_sft_merged, load_sft_policy
from flowrl.policy.template import format_prompt

WORDS = "red fox forest city night neon portrait castle dragon ocean sunset anime".split()


@pytest.fixture(scope="module")
def flows() -> list[str]:
    """Three real library flows, encoded."""
    return [encode_flow(graph) for _, graph in load_base_flows()[:3]]


def write_stage_inputs(root: Path, flows: list[str], n_pairs: int = 64) -> None:
    """Tiny encode/prompts stage outputs: random prompts paired with three real encoded flows."""
    rng = random.Random(0)
    pairs = [{"prompt": " ".join(rng.choices(WORDS, k=6)), "completion": rng.choice(flows)} for _ in range(n_pairs)]
    write_jsonl(root / sft.PAIRS, pairs)
    graphs = [graph for _, graph in load_base_flows()[:3]]
    # "normal" (a scheduler) is already a SmolLM2 token: the vocabulary need not be all new
    schema = infer_schema(graphs)
    schema.save(root / sft.SCHEMA)
    write_json(root / sft.VOCAB, sorted({*flow_tokens(schema), "normal"}))
    write_jsonl(
        root / sft.HOLDOUT,
        [
            {"id": f"h{i}", "prompt": p["prompt"], "negative_prompt": None, "source": "test"}
            for i, p in enumerate(pairs[:4])
        ],
    )


@pytest.fixture(scope="module")
def trained(tiny_params, flows, tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    write_stage_inputs(root, flows)
    return root, sft.run(tiny_params, root)


def test_loss_goes_down_and_metrics_are_written(trained, tiny_params):
    root, metrics = trained
    assert metrics["last_logged_loss"] < metrics["first_logged_loss"]
    assert metrics["n_steps"] == tiny_params.sft.max_steps
    assert metrics["tokens_per_s"] > 0 and metrics["perplexity"] > 1
    assert 0.0 <= metrics["validity"] <= 1.0 and 0.0 <= metrics["eos_rate"] <= 1.0
    assert read_json(root / sft.METRICS) == pytest.approx(metrics, nan_ok=True)
    log = read_json(root / SFTFiles.log.path)  # the loss curve DVC plots
    assert [e["step"] for e in log] == sorted(e["step"] for e in log) and log[0]["loss"] == metrics["first_logged_loss"]
    # the constraint of every later sampler reads the schema saved with the tokenizer
    assert Schema.load(root / sft.OUT_DIR / SCHEMA_FILE).to_dict() == Schema.load(root / sft.SCHEMA).to_dict()


def test_a_missing_schema_fails_before_training_and_names_the_stage(tiny_params, flows, tmp_path):
    write_stage_inputs(tmp_path, flows, n_pairs=8)
    (tmp_path / sft.SCHEMA).unlink()
    with pytest.raises(SchemaError, match="schema.json.*dvc repro encode"):
        sft.run(tiny_params, tmp_path)
    assert not (tmp_path / sft.OUT_DIR).exists()


def completion_nll(model, tok, root: Path) -> float:
    rows = [json.loads(line) for line in (root / sft.PAIRS).read_text().splitlines()[:8]]
    total = 0.0
    for row in rows:
        prompt = tok(format_prompt(row["prompt"]), return_tensors="pt").input_ids
        full = tok(format_prompt(row["prompt"]) + row["completion"] + tok.eos_token, return_tensors="pt").input_ids
        labels = full.clone()
        labels[:, : prompt.shape[1]] = -100
        with torch.no_grad():
            total += float(model(input_ids=full, labels=labels).loss)
    return total / len(rows)


def test_adapter_reloads_and_beats_the_base(trained, tiny_params, base_tokenizer):
    root, _ = trained
    out = root / sft.OUT_DIR
    assert (out / "adapter_model.safetensors").exists() and not list(out.glob("*.bin"))
    model, tok = load_sft_policy(out)
    rebuilt = build_tiny_model(tiny_params.policy, len(base_tokenizer), tiny_params.seed).state_dict()
    base = model.get_base_model().state_dict()
    assert torch.equal(
        base["model.layers.0.self_attn.q_proj.base_layer.weight"], rebuilt["model.layers.0.self_attn.q_proj.weight"]
    )
    assert all(len(tok(t, add_special_tokens=False).input_ids) == 1 for t in read_json(root / sft.VOCAB))
    tuned = completion_nll(model, tok, root)
    with model.disable_adapter():
        base = completion_nll(model, tok, root)
    assert tuned < base
    merged, _ = load_sft_merged(out)
    assert completion_nll(merged, tok, root) == pytest.approx(tuned, rel=1e-4)


def test_labels_mask_the_prompt(tiny_params, base_tokenizer, flows, tmp_path):
    from flowrl.encoding.vocab import extend_tokenizer
    from flowrl.policy.loading import build_tiny_model

    model = build_tiny_model(tiny_params.policy, len(base_tokenizer), seed=0)
    extend_tokenizer(base_tokenizer, flow_tokens(infer_schema([g for _, g in load_base_flows()[:3]])), model)
    rows = [
        {"prompt": "a red fox", "completion": flows[0]},
        {"prompt": "neon city at night in the rain", "completion": flows[1]},
    ]
    trainer = sft.build_trainer(
        model, base_tokenizer, sft.to_dataset(rows), None, tiny_params.sft, tiny_params.policy, tmp_path, 0
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for i, row in enumerate(rows):
        n_prompt = len(base_tokenizer(format_prompt(row["prompt"])).input_ids)
        n_completion = len(base_tokenizer(row["completion"], add_special_tokens=False).input_ids) + 1  # + EOS
        kept = batch["labels"][i][batch["labels"][i] != -100].tolist()
        ids = batch["input_ids"][i][batch["attention_mask"][i] == 1].tolist()
        assert len(kept) == n_completion and kept[-1] == base_tokenizer.eos_token_id
        assert kept == ids[n_prompt:]


def test_rerun_resumes_from_the_last_checkpoint(trained, tiny_params):
    root, first = trained
    run_dir = next((root / sft.CHECKPOINTS).iterdir())
    final = max(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    shutil.rmtree(final)  # as if the run had died after the previous checkpoint
    quick = tiny_params.model_copy(update={"sft": tiny_params.sft.model_copy(update={"n_validity": 0})})
    again = sft.run(quick, root)  # validity settings are not part of the run's fingerprint
    assert again["resumed_from_step"] == tiny_params.sft.save_steps
    assert again["n_steps"] == first["n_steps"]


def test_guidance_on_sft_base_plus_grpo_adapter(trained, tmp_path):
    """The pipeline layout (docs/policy.md): merged SFT base + a GRPO LoRA; gamma 0 is the SFT model itself."""
    from peft import LoraConfig, get_peft_model

    from flowrl.policy.decoding.guidance import load_guided_policy, sample_guided
    from flowrl.policy.decoding.sampling import SamplingConfig, sample_flows

    root, _ = trained
    merged, tok = load_sft_merged(root / sft.OUT_DIR)
    torch.manual_seed(0)
    grpo = get_peft_model(merged, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a GRPO adapter that really differs from the SFT model
        for name, param in grpo.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    grpo.save_pretrained(tmp_path / "grpo")
    model, tok = load_guided_policy(root / sft.OUT_DIR, tmp_path / "grpo")
    prompts, cfg = ["a red fox", "neon city"], SamplingConfig(max_new_tokens=8, batch_size=2, seed=3)
    sft_only, _ = load_sft_merged(root / sft.OUT_DIR)
    expected_sft = [c.token_ids for c in sample_flows(sft_only, tok, prompts, cfg)]
    expected_grpo = [c.token_ids for c in sample_flows(model, tok, prompts, cfg, adapter="grpo")]
    assert [c.token_ids for c in sample_guided(model, tok, prompts, cfg, 0.0)] == expected_sft
    assert [c.token_ids for c in sample_guided(model, tok, prompts, cfg, 1.0)] == expected_grpo


def test_validity_counts_flows_that_decode_and_validate(flows):
    assert sft.flow_validity(flows) == (1.0, 1.0)
    broken = [flows[0], flows[1].replace("\n", " ", 3), "not a flow at all"]
    assert sft.flow_validity(broken) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    orphan = flows[0] + "\nEmptyLatentImage width=512 height=512 batch_size=1"
    assert sft.flow_validity([orphan]) == (1.0, 0.0)  # valid for ComfyUI, but a node feeds nothing


def test_fingerprint_follows_training_settings_only(trained, tiny_params):
    root, _ = trained
    rows = sft.load_pairs(root / sft.PAIRS)
    key = lambda p: sft.run_fingerprint(p, rows, root / sft.VOCAB)  # noqa: E731
    changed = lambda **kw: tiny_params.model_copy(update={"sft": tiny_params.sft.model_copy(update=kw)})  # noqa: E731
    assert key(changed(n_validity=99, logging_steps=7)) == key(tiny_params)
    assert key(changed(learning_rate=0.5)) != key(tiny_params)
    assert key(tiny_params.model_copy(update={"seed": tiny_params.seed + 1})) != key(tiny_params)
