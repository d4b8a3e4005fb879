"""The `sft` stage: LoRA fine-tuning on (prompt, encoded flow) pairs with trl's SFTTrainer.

Loss is on the completion (flow + EOS) only; lm_head and embed_tokens are trained in full since
the flow tokens are new. Checkpoints go to a folder named by a fingerprint of the config and data,
so a rerun with the same inputs resumes and a changed one starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from flowrl.config import Params, PolicyConfig, SFTConfig
from flowrl.errors import FlowRLError
from flowrl.io import read_json, read_jsonl, write_json
from flowrl.policy.loading import load_policy, save_policy_spec
from flowrl.policy.sampling import SamplingConfig, sample_flows
from flowrl.policy.template import PROMPT_TEMPLATE, format_prompt

PAIRS = "data/encode/sft_pairs.jsonl"
VOCAB = "data/encode/vocab.json"
HOLDOUT = "data/prompts/holdout.jsonl"
OUT_DIR = "models/sft"
CHECKPOINTS = "models/sft_checkpoints"
METRICS = "reports/sft/metrics.json"


class SFTDataError(FlowRLError):
    """The SFT pairs file is missing, empty or malformed."""


def load_pairs(path: Path) -> list[dict]:
    """Read sft_pairs.jsonl; every row must have non-empty string `prompt` and `completion`."""
    rows = read_jsonl(path)
    if not rows:
        raise SFTDataError(f"{path}: no pairs; rerun the encode stage (dvc repro encode)")
    for i, row in enumerate(rows, 1):
        if not (isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str) and row["completion"]):
            raise SFTDataError(f"{path}:{i}: needs string fields 'prompt' and 'completion'; rerun the encode stage")
    return rows


def split_pairs(rows: list[dict], cfg: SFTConfig, seed: int) -> tuple[list[dict], list[dict]]:
    """Shuffle with `seed`; hold out `n_eval` pairs (at most a fifth), train on up to `n_train` of the rest."""
    rows = rows[:]
    random.Random(seed).shuffle(rows)
    n_eval = min(cfg.n_eval, max(1, len(rows) // 5))
    held, train = rows[:n_eval], rows[n_eval:]
    return train[: cfg.n_train] if cfg.n_train else train, held


def to_dataset(rows: list[dict]) -> Dataset:
    """trl prompt-completion dataset in the paper's template (trl appends EOS to the completion)."""
    return Dataset.from_list([{"prompt": format_prompt(r["prompt"]), "completion": r["completion"]} for r in rows])


def lora_config(cfg: SFTConfig) -> LoraConfig:
    """LoRA as in the paper (A.6.1); tied embeddings stay tied (one trainable copy)."""
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        modules_to_save=list(cfg.modules_to_save),
        ensure_weight_tying=True,
        task_type="CAUSAL_LM",
    )


def trainer_args(cfg: SFTConfig, policy: PolicyConfig, output_dir: Path, seed: int) -> TRLSFTConfig:
    """trl SFTConfig from our section: completion-only loss, safetensors checkpoints, bf16 autocast on CPU."""
    on_cpu = not torch.cuda.is_available()
    return TRLSFTConfig(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.num_epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        max_length=cfg.max_length,
        completion_only_loss=True,
        bf16=policy.bf16,
        use_cpu=on_cpu,
        gradient_checkpointing=False,  # small models: memory is not the limit, speed is
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to="none",
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def build_trainer(model, tokenizer, train: Dataset, held: Dataset | None, cfg: SFTConfig, policy: PolicyConfig, output_dir: Path, seed: int) -> SFTTrainer:
    """SFTTrainer with a fresh LoRA adapter on `model` (the base, flow tokens already added)."""
    return SFTTrainer(
        model=model,
        args=trainer_args(cfg, policy, output_dir, seed),
        train_dataset=train,
        eval_dataset=held,
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
    )


@torch.no_grad()
def completion_perplexity(trainer: SFTTrainer) -> float:
    """exp of the mean NLL over completion tokens of the trainer's (already tokenized) eval set."""
    model = trainer.model.eval()
    total, count = 0.0, 0
    for batch in trainer.get_eval_dataloader():
        batch = {k: v.to(model.device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="sum")
        total, count = total + float(nll), count + int((labels != -100).sum())
    return math.exp(total / max(count, 1))


def flow_validity(texts: list[str]) -> float:
    """Share of encoded flows that decode and validate with no problem (NaN for no flows)."""
    if not texts:
        return float("nan")
    from flowrl.comfy.validate import validate_graph
    from flowrl.encoding.codec import decode_flow

    ok = 0
    for text in texts:
        try:
            ok += not validate_graph(decode_flow(text))
        except FlowRLError:
            pass
    return ok / len(texts)


def run_fingerprint(params: Params, pairs_path: Path, vocab_path: Path) -> str:
    """Short hash of everything the trained weights depend on: policy + sft params, seed, data files."""
    h = hashlib.sha256()
    h.update(json.dumps([params.policy.model_dump(mode="json"), params.sft.model_dump(mode="json"), params.seed], sort_keys=True).encode())
    for path in (pairs_path, vocab_path):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """Train the SFT policy; write models/sft (adapter, tokenizer, policy.json) and reports/sft/metrics.json."""
    root = Path(root)
    cfg, seed = params.sft, params.seed
    pairs_path, vocab_path = root / PAIRS, root / VOCAB
    train_rows, held_rows = split_pairs(load_pairs(pairs_path), cfg, seed)
    tokens = read_json(vocab_path)
    model, tokenizer = load_policy(params.policy, tokens, seed)
    base_vocab = len(tokenizer) - len(tokens)

    ckpt_dir = root / CHECKPOINTS / f"run-{run_fingerprint(params, pairs_path, vocab_path)}"
    trainer = build_trainer(model, tokenizer, to_dataset(train_rows), to_dataset(held_rows), cfg, params.policy, ckpt_dir, seed)
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.exists() else None
    result = trainer.train(resume_from_checkpoint=last)

    out = root / OUT_DIR
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    save_policy_spec(tmp, params.policy, seed, base_vocab, template=PROMPT_TEMPLATE, n_flow_tokens=len(tokens), sft=cfg.model_dump(mode="json"))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # the folder appears whole or not at all

    perplexity = completion_perplexity(trainer)
    holdout = [r["prompt"] for r in read_jsonl(root / HOLDOUT)] if (root / HOLDOUT).exists() else [r["prompt"] for r in held_rows]
    sampling = SamplingConfig.from_policy(params.policy, seed, batch_size=cfg.batch_size, max_new_tokens=cfg.validity_max_new_tokens)
    samples = sample_flows(trainer.model, tokenizer, holdout[: cfg.n_validity], sampling) if cfg.n_validity else []

    logged = [e for e in trainer.state.log_history if "loss" in e]
    runtime = result.metrics.get("train_runtime", 0.0)
    counted = [e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e]  # trl: non-pad tokens seen
    n_tokens = float(counted[-1] - (counted[0] if last and len(counted) > 1 else 0)) if counted else 0.0
    metrics = {
        "perplexity": perplexity,
        "validity": flow_validity([s.text for s in samples]),
        "eos_rate": sum(s.finished for s in samples) / len(samples) if samples else float("nan"),
        "train_loss": float(result.training_loss),
        "first_logged_loss": float(logged[0]["loss"]) if logged else float("nan"),
        "last_logged_loss": float(logged[-1]["loss"]) if logged else float("nan"),
        "tokens_per_s": n_tokens / runtime if runtime else 0.0,
        "n_steps": float(trainer.state.global_step),
        "resumed_from_step": float(Path(last).name.split("-")[-1]) if last else 0.0,
        "n_train_pairs": float(len(train_rows)),
        "n_eval_pairs": float(len(held_rows)),
    }
    write_json(root / METRICS, metrics)
    return metrics
