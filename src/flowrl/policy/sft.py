"""The `sft` stage: LoRA fine-tuning on (prompt, encoded flow) pairs with trl's SFTTrainer.

Loss is on the completion (flow + EOS) only; the flow tokens are new, so their rows of embed_tokens
(and of an untied lm_head) train too: only those rows (`sft.token_rows: new`, peft trainable_token_indices),
or full copies of both matrices (`full`). Checkpoints go to a folder named by a fingerprint of the config and data,
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
from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from flowrl.data.prompts import holdout_split
from flowrl.encoding.policy_view import check_flow_text
from flowrl.encoding.schema import Schema
from flowrl.errors import FlowRLError
from flowrl.io import read_json, read_jsonl, write_json
from flowrl.params.model import Params, PolicyConfig, SFTConfig
from flowrl.pipeline.stages import (
    EncodeFiles,
    FlowsFiles,
    PromptsFiles,
    RewardFiles,
    SFTFiles,
    TripletsFiles,
    report_dir,
)
from flowrl.policy.decoding.constrained import SCHEMA_FILE, constraint_processors
from flowrl.policy.decoding.sampling import SamplingConfig, sample_flows
from flowrl.policy.loading import load_policy, load_tokenizer, save_policy_spec
from flowrl.policy.pairing import reward_pairs
from flowrl.policy.prompt_codes import PromptCodes, coded_prompts
from flowrl.policy.template import PROMPT_TEMPLATE, format_prompt
from flowrl.runtime.device import configure, placement, resolve_device
from flowrl.runtime.trainer_defaults import section_trainer_kwargs

PAIRS = EncodeFiles.sft_pairs
VOCAB = EncodeFiles.vocab
SCHEMA = EncodeFiles.schema  # saved with the policy: per-field value vocabularies for constrained decoding
HOLDOUT = PromptsFiles.holdout
OUT_DIR = SFTFiles.dir
CHECKPOINTS = SFTFiles.checkpoints
METRICS = report_dir("sft") / "metrics.json"


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


def lora_config(cfg: SFTConfig, new_token_ids: list[int] | None = None, tied: bool = True) -> LoraConfig:
    """LoRA as in the paper (A.6.1); tied embeddings stay tied (one trainable copy).

    With `cfg.token_rows: new` and the flow tokens' ids, only those rows of embed_tokens (and of an untied lm_head)
    train (`token_rows_config`); otherwise `cfg.modules_to_save` are trained in full copies.
    """
    rows = token_rows_config(cfg, new_token_ids, tied)
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        modules_to_save=[m for m in cfg.modules_to_save if not rows or m not in ("embed_tokens", "lm_head")] or None,
        trainable_token_indices=rows,
        ensure_weight_tying=tied,
        task_type="CAUSAL_LM",
    )


def token_rows_config(
    cfg: SFTConfig, new_token_ids: list[int] | None, tied: bool = True
) -> dict[str, list[int]] | None:
    """peft `trainable_token_indices` for the new flow-token rows: embed_tokens (tied lm_head follows it through
    `ensure_weight_tying`), or embed_tokens and lm_head when untied (Llama-3.1-8B). None: train full copies."""
    if cfg.token_rows != "new" or not new_token_ids:
        return None
    ids = sorted(set(int(i) for i in new_token_ids))
    return {"embed_tokens": ids} if tied else {"embed_tokens": ids, "lm_head": ids}


def new_token_ids(model, base_vocab: int) -> list[int]:
    """Ids of the rows added for the flow tokens: those past the base vocabulary."""
    return list(range(base_vocab, model.get_input_embeddings().weight.shape[0]))


def is_tied(model) -> bool:
    """Whether the output head shares the input embedding's weight."""
    head = model.get_output_embeddings()
    return head is None or head.weight is model.get_input_embeddings().weight


def trainer_args(cfg: SFTConfig, policy: PolicyConfig, output_dir: Path, seed: int) -> TRLSFTConfig:
    """trl SFTConfig from our section: completion-only loss, safetensors checkpoints, bf16 autocast on CPU."""
    return TRLSFTConfig(
        **section_trainer_kwargs(cfg, output_dir, seed, policy.bf16),
        per_device_eval_batch_size=cfg.batch_size,
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="linear",
        max_length=cfg.max_length,
        completion_only_loss=True,
    )


class FlowSFTTrainer(SFTTrainer):
    """SFTTrainer that counts trained tokens and, on CPU, uses the plain full-logits loss.

    trl's default loss runs a chunked fused lm-head kernel (Triton on GPU); on CPU its tiles run as
    Python loops and cost 3/4 of a tiny-model step. Both compute the same token-mean NLL over the
    labels, which already hold -100 on the prompt (completion-only loss).
    """

    def __init__(self, *args, plain_loss: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.plain_loss = plain_loss
        self.tokens_seen = 0  # non-pad tokens trained on in this process (for tokens/s)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.tokens_seen += int(inputs["attention_mask"].sum())
        if not self.plain_loss:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        model_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask", "labels")}
        return Trainer.compute_loss(
            self, model, {**model_inputs, "use_cache": False}, return_outputs, num_items_in_batch
        )


def build_trainer(
    model,
    tokenizer,
    train: Dataset,
    held: Dataset | None,
    cfg: SFTConfig,
    policy: PolicyConfig,
    output_dir: Path,
    seed: int,
    base_vocab: int | None = None,
) -> FlowSFTTrainer:
    """SFTTrainer with a fresh LoRA adapter on `model` (the base, flow tokens already added); all weights for source=scratch.

    Args:
        base_vocab: the base tokenizer's size; rows past it are the flow tokens' (trained alone with token_rows: new).
    """
    ids = new_token_ids(model, base_vocab) if base_vocab else None
    return FlowSFTTrainer(
        model=model,
        args=trainer_args(cfg, policy, output_dir, seed),
        train_dataset=train,
        eval_dataset=held,
        processing_class=tokenizer,
        peft_config=None if policy.source == "scratch" else lora_config(cfg, ids, is_tied(model)),
        plain_loss=resolve_device().type == "cpu",
    )


@torch.no_grad()
def completion_perplexity(trainer: FlowSFTTrainer) -> float:
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


def flow_validity(texts: list[str]) -> tuple[float, float]:
    """(valid share, usable share) of encoded flows (`check_flow_text`); NaN for no flows."""
    if not texts:
        return float("nan"), float("nan")
    checks = [check_flow_text(t) for t in texts]
    return sum(c.valid for c in checks) / len(checks), sum(c.usable for c in checks) / len(checks)


# settings that change what is measured or logged, not the trained weights: a change keeps resuming
NOT_TRAINING = {
    "policy": {"temperature", "top_p", "max_new_tokens", "gamma"},
    "sft": {"n_validity", "validity_max_new_tokens", "logging_steps", "save_steps"},
}


def run_fingerprint(params: Params, rows: list[dict], vocab_path: Path) -> str:
    """Short hash of everything the trained weights depend on: policy + sft params, seed, the training pairs, vocabulary."""
    sections = {
        name: getattr(params, name).model_dump(mode="json", exclude=skip) for name, skip in NOT_TRAINING.items()
    }
    h = hashlib.sha256(json.dumps([sections, params.seed], sort_keys=True).encode())
    h.update(json.dumps(rows, sort_keys=True).encode())
    h.update(vocab_path.read_bytes())
    return h.hexdigest()[:12]


def load_reward_ensemble(root: Path, why: str):
    """The reward stage's surrogate ensemble (models/reward/full); a clear error naming the setting that needs it."""
    from flowrl.reward.ensemble import Ensemble

    folder = root / RewardFiles.full
    if not (folder / "ensemble.json").exists():
        raise SFTDataError(
            f"{folder}: no reward ensemble, which {why} needs; run the reward stage first (dvc repro reward)"
        )
    return Ensemble.load(folder)


def training_pairs(params: Params, root: Path, ensemble) -> tuple[list[dict], dict[str, float]]:
    """The SFT pairs of `sft.pairing`: the encode stage's random pairs, or pairs drawn by the surrogate's score."""
    rows = load_pairs(root / PAIRS)
    if params.sft.pairing == "random":
        return rows, {}
    prompts = sorted({r["prompt"] for r in read_jsonl(root / TripletsFiles.train)})
    augmented = {r["id"] for r in read_jsonl(root / FlowsFiles.augmented)}
    pool = sorted({r["policy_text"] for r in read_jsonl(root / EncodeFiles.flows) if r["id"] in augmented})
    if not prompts or not pool:
        raise SFTDataError(
            f"sft.pairing: reward needs prompts in {TripletsFiles.train} and flows in {EncodeFiles.flows}; rerun those stages"
        )
    return reward_pairs(prompts, pool, ensemble, len(rows), params.sft, params.seed)


def fit_prompt_codes(params: Params, ensemble, prompts: list[str]) -> PromptCodes | None:
    """k-means codebooks (`policy.prompt_codes`) over the reward's frozen prompt embeddings of `prompts`; None when off."""
    if not params.policy.prompt_codes:
        return None
    embedder = getattr(getattr(ensemble, "featurizer", None), "embedder", None)
    if embedder is None:
        raise SFTDataError(
            "policy.prompt_codes codes the prompt with the head reward's frozen prompt encoder, but models/reward/full "
            "is not a head ensemble; set reward.member: head or policy.prompt_codes: []"
        )
    encoder = embedder.cfg.model_dump(mode="json", include={"source", "model", "tiny"})
    return PromptCodes.fit(
        embedder.embed(prompts, progress=True),
        params.policy.prompt_codes,
        params.seed,
        encoder,
        embedder.max_length,
        embedder=embedder,
    )


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """Train the SFT policy; write models/sft (adapter, tokenizer, flow schema, prompt codes, policy.json) and reports/sft/metrics.json."""
    root = Path(root)
    cfg, seed = params.sft, params.seed
    vocab_path = root / VOCAB
    needs_reward = [
        why
        for why, on in (
            ("sft.pairing: reward", cfg.pairing == "reward"),
            ("policy.prompt_codes", bool(params.policy.prompt_codes)),
        )
        if on
    ]
    ensemble = load_reward_ensemble(root, " and ".join(needs_reward)) if needs_reward else None
    rows, pair_stats = training_pairs(params, root, ensemble)
    prompts = sorted({r["prompt"] for r in rows})
    codes = fit_prompt_codes(params, ensemble, prompts)
    train_rows, held_rows = split_pairs(rows, cfg, seed)
    tokens = read_json(vocab_path)
    schema = Schema.load(root / SCHEMA)
    scratch = params.policy.source == "scratch"
    corpus = [r["prompt"] for r in train_rows] + [r["completion"] for r in train_rows] if scratch else ()
    if codes is not None:  # the policy reads the code tokens first (trained on the raw text: codes are whole tokens)
        coded = dict(zip(prompts, codes.apply(prompts)))
        train_rows, held_rows = (
            [{**r, "prompt": coded[r["prompt"]]} for r in part] for part in (train_rows, held_rows)
        )
    configure(
        params.device
    )  # where the models run (flowrl.runtime.device); the pipeline prints the cost estimate first
    # LoRA: the frozen base in bf16 on a bf16 GPU; scratch trains every weight (fp32 master weights under autocast)
    code_tokens = codes.tokens() if codes is not None else []
    model, tokenizer = load_policy(params.policy, tokens + code_tokens, seed, corpus, placement(frozen=not scratch))
    # not len(tokenizer) - len(tokens): some flow tokens (e.g. "normal") are already in the base vocabulary
    base_vocab = params.policy.scratch.vocab_size if scratch else len(load_tokenizer(params.policy))

    ckpt_dir = root / CHECKPOINTS / f"run-{run_fingerprint(params, train_rows, vocab_path)}"
    trainer = build_trainer(
        model,
        tokenizer,
        to_dataset(train_rows),
        to_dataset(held_rows),
        cfg,
        params.policy,
        ckpt_dir,
        seed,
        base_vocab=None if scratch else base_vocab,
    )
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.exists() else None
    result = trainer.train(resume_from_checkpoint=last)
    if not trainer.is_world_process_zero():  # multi-GPU launch: rank 0 saves and reports (docs/scaling.md)
        return {}

    out = root / OUT_DIR
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    schema.save(tmp / SCHEMA_FILE)
    if codes is not None:
        codes.save(tmp)
    save_policy_spec(
        tmp,
        params.policy,
        seed,
        base_vocab,
        template=PROMPT_TEMPLATE,
        n_flow_tokens=len(tokens),
        sft=cfg.model_dump(mode="json"),
        full_weights=scratch,
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # the folder appears whole or not at all

    perplexity = completion_perplexity(trainer)
    if (root / HOLDOUT).exists():  # the dev half: what settings are tuned on
        holdout = coded_prompts(
            codes, [r["prompt"] for r in holdout_split(read_jsonl(root / HOLDOUT))[0]][: cfg.n_validity]
        )
    else:
        holdout = [r["prompt"] for r in held_rows]  # already coded
    sampling = SamplingConfig.from_policy(
        params.policy, seed, batch_size=cfg.batch_size, max_new_tokens=cfg.validity_max_new_tokens
    )
    constraint = constraint_processors(params.policy, tokenizer, sampling.max_new_tokens, schema)  # policy.constrained
    samples = (
        sample_flows(trainer.model, tokenizer, holdout[: cfg.n_validity], sampling, logits_processor=constraint)
        if cfg.n_validity
        else []
    )
    # without the constraint: how much of the flow language the model learnt itself (docs/policy.md)
    free = (
        sample_flows(trainer.model, tokenizer, holdout[: cfg.n_validity], sampling)
        if cfg.n_validity and constraint
        else []
    )

    logged = [e for e in trainer.state.log_history if "loss" in e]
    SFTFiles.log.write(root, logged)
    runtime = result.metrics.get("train_runtime", 0.0)
    metrics = {
        "perplexity": perplexity,
        **dict(zip(("validity", "usable"), flow_validity([s.text for s in samples]))),
        **dict(zip(("validity_unconstrained", "usable_unconstrained"), flow_validity([s.text for s in free]))),
        "eos_rate": sum(s.finished for s in samples) / len(samples) if samples else float("nan"),
        "train_loss": float(result.training_loss),
        "first_logged_loss": float(logged[0]["loss"]) if logged else float("nan"),
        "last_logged_loss": float(logged[-1]["loss"]) if logged else float("nan"),
        "tokens_per_s": trainer.tokens_seen / runtime if runtime else 0.0,
        "n_steps": float(trainer.state.global_step),
        "resumed_from_step": float(Path(last).name.split("-")[-1]) if last else 0.0,
        "n_train_pairs": float(len(train_rows)),
        "n_eval_pairs": float(len(held_rows)),
        "n_code_tokens": float(len(code_tokens)),
        **pair_stats,
    }
    write_json(root / METRICS, metrics)
    return metrics
