"""The `grpo` stage: trl GRPO on the SFT policy with the surrogate reward (paper sec. 3.3, A.6.3).

A new LoRA adapter is trained on the SFT model with its adapter merged (so trl's "adapter off"
KL reference is the SFT policy). Completions come from the project's sampling loop
(`flowrl.policy.decoding.sampling`), so constrained decoding can be plugged in as a logits processor.
The reward is the uncertainty-aware surrogate ensemble (`flowrl.reward.shaping.ShapedReward`);
with `reward.component_reward` the per-token reward of eq. 3 becomes per-token advantages (B, T).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from datasets import Dataset
from transformers import LogitsProcessor, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from flowrl.data.prompts import holdout_split
from flowrl.errors import FlowRLError
from flowrl.io import atomic_path, read_jsonl, write_json
from flowrl.params.model import Params
from flowrl.pipeline.stages import GRPOFiles, PromptsFiles, RewardFiles, SFTFiles, report_dir
from flowrl.policy.decoding.constrained import constraint_processors
from flowrl.policy.decoding.sampling import SamplingConfig, sample_flows
from flowrl.policy.grpo_config import lora_config, trainer_args
from flowrl.policy.grpo_trainer import FlowGRPOTrainer, flow_is_valid
from flowrl.policy.loading import load_sft_merged, read_policy_spec, save_policy_spec
from flowrl.policy.prompt_codes import PromptCodes, coded_prompts
from flowrl.policy.template import format_prompt
from flowrl.reward.head import CACHE_FILE
from flowrl.reward.scorer_reward import ScorerReward
from flowrl.reward.shaping import ShapedReward
from flowrl.runtime.device import configure

PROMPTS = PromptsFiles.train
HOLDOUT = PromptsFiles.holdout
SFT_DIR = SFTFiles.dir
REWARD_DIR = RewardFiles.dir
OUT_DIR = GRPOFiles.dir
CHECKPOINTS = GRPOFiles.checkpoints
METRICS = report_dir("grpo") / "metrics.json"
LOG = GRPOFiles.log
PLOT = GRPOFiles.curves


class GRPODataError(FlowRLError):
    """A GRPO input (prompts, SFT policy, reward ensemble, scorer) is missing or malformed."""


class ProbeCallback(TrainerCallback):
    """Every `every` steps, scores flows sampled for the probe prompts with the true scorer (logged as `true_score_probe`)."""

    def __init__(self, evaluate: Callable[[object], dict[str, float]], every: int):
        self.evaluate, self.every, self.trainer = evaluate, every, None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every and self.trainer is not None and state.global_step % self.every == 0:
            for key, value in self.evaluate(self.trainer.model).items():
                self.trainer._metrics["train"][key].append(value)
            self.trainer.model.train()


class LogFileCallback(TrainerCallback):
    """Rewrites reports/grpo/log.json (one row per logged step) from the trainer's log history."""

    def __init__(self, root: Path):
        self.root = root

    def on_log(self, args, state, control, **kwargs):
        LOG.write(self.root, step_log(state.log_history))


def step_log(history: Sequence[dict]) -> list[dict]:
    """Per-step entries of a trainer log history (the final train summary left out)."""
    return [e for e in history if "reward" in e or "true_score_probe" in e]


def decode_graph(text: str) -> dict:
    """Runnable API graph of a policy-view flow (`flowrl.encoding.policy_view.policy_graph`)."""
    from flowrl.encoding.policy_view import policy_graph

    return policy_graph(text)


def probe_true_score(
    model,
    tokenizer,
    prompts: list[str],
    sampling: SamplingConfig,
    scorer,
    validator: Callable[[str], bool],
    logits_processor: Sequence[LogitsProcessor] | None = None,
    decoder: Callable[[str], dict] = decode_graph,
    policy_prompts: list[str] | None = None,
) -> dict[str, float]:
    """Sample one flow per probe prompt and score the valid ones (decoded API graphs) with the true scorer.

    Args:
        policy_prompts: what the policy reads for `prompts` (with their code tokens); None = `prompts`.

    Returns:
        {"true_score_probe": mean true score of the valid flows (NaN if none), "probe_validity": valid share}.
    """
    samples = sample_flows(model, tokenizer, policy_prompts or prompts, sampling, logits_processor=logits_processor)
    valid = [(p, s) for p, s in zip(prompts, samples, strict=True) if validator(s.text)]
    scores = list(scorer.score([p for p, _ in valid], [decoder(s.text) for _, s in valid])) if valid else []
    return {
        "true_score_probe": sum(scores) / len(scores) if scores else float("nan"),
        "probe_validity": len(valid) / max(len(samples), 1),
    }


def load_prompts(path: Path, n: int | None, seed: int, dev_only: bool = False) -> list[str]:
    """Prompts of a prompts-stage file, shuffled with `seed`, at most `n` (None = all); `dev_only`: the holdout's dev half."""
    rows = read_jsonl(path)
    rows = holdout_split(rows)[0] if dev_only else rows
    prompts = [r.get("prompt") for r in rows]
    bad = next((i for i, p in enumerate(prompts, 1) if not (isinstance(p, str) and p.strip())), None)
    if bad is not None or not prompts:
        where = f"{path}:{bad}" if bad else str(path)
        raise GRPODataError(
            f"{where}: needs non-empty string 'prompt' fields; rerun the prompts stage (dvc repro prompts)"
        )
    random.Random(seed).shuffle(prompts)
    return prompts[:n] if n else prompts


def run_fingerprint(params: Params, root: Path) -> str:
    """Short hash of what the GRPO weights depend on: policy/grpo/reward params, seed, prompts, SFT adapter, reward ensembles."""
    h = hashlib.sha256()
    sections = [
        params.policy.model_dump(mode="json"),
        params.grpo.model_dump(mode="json"),
        params.reward.model_dump(mode="json"),
        params.seed,
    ]
    h.update(json.dumps(sections, sort_keys=True).encode())
    files = [
        root / PROMPTS,
        root / SFT_DIR / "policy.json",
        *sorted((root / SFT_DIR).glob("*.safetensors")),
        *sorted((root / REWARD_DIR).glob("*/ensemble.json")),
        *sorted((root / REWARD_DIR).glob("*/member_*/train_stats.json")),
    ]
    for path in files:
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:12]


def plot_curves(path: Path, log: Sequence[dict]) -> Path:
    """PNG of surrogate reward (mean +- std), probe true score and KL against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        pts = [(e["step"], e[key]) for e in log if e.get(key) is not None and not math.isnan(e[key])]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    steps, mean = series("reward")
    std = dict(zip(*series("reward_std")))
    axes[0].plot(steps, mean, marker=".")
    axes[0].fill_between(
        steps,
        [m - std.get(s, 0) for s, m in zip(steps, mean)],
        [m + std.get(s, 0) for s, m in zip(steps, mean)],
        alpha=0.2,
    )
    for ax, key, title in (
        (axes[0], None, "surrogate reward (mean ± std)"),
        (axes[1], "true_score_probe", "true score, probe prompts"),
        (axes[2], "kl", "KL to SFT"),
    ):
        if key:
            ax.plot(*series(key), marker="o")
        ax.set_title(title)
        ax.set_xlabel("step")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _last(log: Sequence[dict], key: str) -> float:
    values = [e[key] for e in log if e.get(key) is not None]
    return float(values[-1]) if values else float("nan")


def run(
    params: Params,
    root: Path = Path("."),
    *,
    validator: Callable[[str], bool] | None = None,
    scorer=None,
    decoder: Callable[[str], dict] = decode_graph,
    callbacks: Sequence[TrainerCallback] = (),
    logits_processor: Sequence[LogitsProcessor] | None = None,
) -> dict[str, float]:
    """Train the GRPO adapter; write models/grpo, reports/grpo/{metrics.json, log.json, curves.png}.

    Args:
        validator: flow text -> valid? (default: decode + validate; all invalid until the codec exists).
        decoder: flow text -> API graph for the true scorer (default: `decode_flow`).
        scorer: the true scorer for the probe; default `load_scorer(params.scoring.scorer, params.scoring.options)`.
        callbacks: extra trainer callbacks (tests interrupt a run with one).
        logits_processor: processors for every sampling step (constrained decoding).
    """
    root = Path(root)
    cfg, seed = params.grpo, params.seed
    configure(
        params.device
    )  # where the models run (flowrl.runtime.device); the pipeline prints the cost estimate first
    validator = functools.lru_cache(maxsize=4096)(validator or flow_is_valid)
    on_scorer = cfg.reward == "scorer"
    needs = [root / SFT_DIR / "policy.json"] + ([] if on_scorer else [root / REWARD_DIR / "full" / "ensemble.json"])
    for need in needs:
        if not need.exists():
            raise GRPODataError(f"{need}: not found; run the sft and reward stages first (dvc repro sft reward)")
    train_prompts = load_prompts(root / PROMPTS, cfg.n_train_prompts, seed)
    probe = (
        load_prompts(root / HOLDOUT, cfg.n_probe, seed, dev_only=True) if cfg.n_probe else []
    )  # tune on dev, report on test
    if (probe or on_scorer) and scorer is None:
        from flowrl.scoring.base import load_scorer

        scorer = load_scorer(params.scoring.scorer, params.scoring.options)

    model, tokenizer = load_sft_merged(root / SFT_DIR)
    if on_scorer:  # diagnostic: train on the true scorer (flowrl.reward.scorer_reward)
        shaped = ScorerReward(scorer, params.reward, validator, decoder)
    else:
        shaped = ShapedReward.load(root / REWARD_DIR, params.reward, validator=validator)
    max_new = cfg.max_new_tokens or params.policy.max_new_tokens
    sampling = SamplingConfig.from_policy(
        params.policy.model_copy(update={"temperature": cfg.temperature}),
        seed,
        batch_size=cfg.batch_size,
        max_new_tokens=max_new,
    )
    logits_processor = (
        constraint_processors(params.policy, tokenizer, max_new) if logits_processor is None else logits_processor
    )
    codes = PromptCodes.load(root / SFT_DIR)  # the prompt's code tokens, when SFT trained with them
    if codes is not None:
        codes.embedder(root / REWARD_DIR / "full" / CACHE_FILE)  # read-only: the reward's cached prompt embeddings
    dataset = Dataset.from_list(
        [
            {"prompt": format_prompt(c), "user_prompt": p}
            for p, c in zip(train_prompts, coded_prompts(codes, train_prompts))
        ]
    )
    ckpt_dir = root / CHECKPOINTS / f"run-{run_fingerprint(params, root)}"
    evaluate = functools.partial(
        probe_true_score,
        tokenizer=tokenizer,
        prompts=probe,
        sampling=sampling,
        scorer=scorer,
        validator=validator,
        logits_processor=logits_processor,
        decoder=decoder,
        policy_prompts=coded_prompts(codes, probe),
    )
    probe_cb = ProbeCallback(lambda m: evaluate(m), cfg.probe_every if probe else 0)
    trainer = FlowGRPOTrainer(
        model=model,
        args=trainer_args(cfg, params.policy, ckpt_dir, seed),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=[probe_cb, LogFileCallback(root), *callbacks],
        shaped=shaped,
        sampling=sampling,
        component_reward=params.reward.component_reward and not on_scorer,
        logits_processor=logits_processor,
        quality_groups=cfg.quality_groups,
        uncertain_advantage=cfg.uncertain_advantage,
        invalid_advantage=cfg.invalid_advantage,
        renormalize=cfg.renormalize,
    )
    probe_cb.trainer = trainer
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.exists() else None
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    if not trainer.is_world_process_zero():  # multi-GPU launch: rank 0 saves and reports (docs/scaling.md)
        return {}
    seconds = time.perf_counter() - start

    out = root / OUT_DIR
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(str(tmp), safe_serialization=True)
    policy_cfg, sft_seed, spec = read_policy_spec(root / SFT_DIR)
    extra = {k: v for k, v in spec.items() if k not in ("policy", "seed", "base_vocab_size", "full_weights")}
    save_policy_spec(
        tmp,
        policy_cfg,
        sft_seed,
        int(spec["base_vocab_size"]),
        **extra,
        sft_dir=str(SFT_DIR),
        grpo=cfg.model_dump(mode="json"),
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # the folder appears whole or not at all

    log = step_log(trainer.state.log_history)
    final_probe = {"true_score_probe": float("nan"), "probe_validity": float("nan")}
    if probe:  # the probe is seeded: a probe logged at the last step is what the final policy gives
        at_end = [e for e in log if e.get("step") == trainer.state.global_step and "probe_validity" in e]
        final_probe = (
            {k: float("nan") if at_end[-1][k] is None else at_end[-1][k] for k in final_probe}
            if at_end
            else evaluate(trainer.model)
        )
    LOG.write(root, log)
    plot_curves(root / PLOT, log)
    resumed = float(Path(last).name.split("-")[-1]) if last else 0.0
    steps = float(trainer.state.global_step)
    metrics = {
        "reward_mean_final": _last(log, "reward"),
        "reward_mean_first": float(log[0]["reward"]) if log and log[0].get("reward") is not None else float("nan"),
        "reward_std_final": _last(log, "reward_std"),
        "validity": final_probe["probe_validity"] if probe else _last(log, "validity"),
        "train_validity_final": _last(log, "validity"),
        "share_uncertain": _last(log, "share_uncertain"),
        "kl_final": _last(log, "kl"),
        "true_score_probe_final": final_probe["true_score_probe"],
        "steps": steps,
        "resumed_from_step": resumed,
        "seconds_per_step": seconds / max(steps - resumed, 1.0),
        "n_train_prompts": float(len(train_prompts)),
        "n_probe_prompts": float(len(probe)),
    }
    write_json(root / METRICS, metrics)
    return metrics
