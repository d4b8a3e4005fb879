"""The `grpo` stage: trl GRPO on the SFT policy with the surrogate reward (paper sec. 3.3, A.6.3).

A new LoRA adapter is trained on the SFT model with its adapter merged (so trl's "adapter off"
KL reference is the SFT policy). Completions come from the project's sampling loop
(`flowrl.policy.sampling`), so constrained decoding can be plugged in as a logits processor.
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

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import LogitsProcessor, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import pad

from flowrl.config import GRPOStageConfig, Params, PolicyConfig
from flowrl.errors import FlowRLError
from flowrl.io import atomic_path, read_jsonl, write_json, write_jsonl
from flowrl.policy.constrained import constraint_processors
from flowrl.policy.loading import load_sft_merged, read_policy_spec, save_policy_spec
from flowrl.policy.sampling import ModelScorer, SamplingConfig, generate_ids, sample_flows
from flowrl.policy.template import format_prompt
from flowrl.reward.scorer_reward import ScorerReward
from flowrl.reward.shaping import ShapedReward, is_valid_flow
from flowrl.cost import stage_start
from flowrl.trainer_defaults import common_trainer_kwargs

PROMPTS = "data/prompts/train.jsonl"
HOLDOUT = "data/prompts/holdout.jsonl"
SFT_DIR = "models/sft"
REWARD_DIR = "models/reward"
OUT_DIR = "models/grpo"
CHECKPOINTS = "models/grpo_checkpoints"
METRICS = "reports/grpo/metrics.json"
LOG = "reports/grpo/log.jsonl"
PLOT = "reports/grpo/curves.png"
ADV_EPS = 1e-4  # trl's epsilon in (R - mean) / (std + eps)


class GRPODataError(FlowRLError):
    """A GRPO input (prompts, SFT policy, reward ensemble, scorer) is missing or malformed."""


def flow_is_valid(text: str) -> bool:
    """Decode + validation + usability (`flowrl.reward.shaping.is_valid_flow`)."""
    return is_valid_flow(text)


def group_token_advantages(rewards: torch.Tensor, mask: torch.Tensor, num_generations: int, eps: float = ADV_EPS) -> torch.Tensor:
    """Per-token advantages with the group baseline, shape (B, T); zero on padding.

    Consecutive rows form groups of G = `num_generations` completions of one prompt. Each
    completion weighs 1/G in its group and its tokens share that weight equally:
    m_i = mean_t R_i(t), mu = mean_i m_i, sigma^2 = 1/(G-1) * sum_i mean_t (R_i(t) - mu)^2,
    A_i(t) = (R_i(t) - mu) / (sigma + eps). With R_i(t) = R_i for every t this is exactly trl's
    sequence advantage (R_i - mean) / (std + eps) (Bessel-corrected std) on every token.

    Args:
        rewards: (B, T) per-token rewards, B a multiple of G.
        mask: (B, T) 1 on completion tokens, 0 on padding.

    >>> group_token_advantages(torch.tensor([[1.0, 1.0], [3.0, 0.0]]), torch.tensor([[1, 1], [1, 0]]), 2, eps=0.0)
    tensor([[-0.7071, -0.7071],
            [ 0.7071,  0.0000]])
    """
    if rewards.shape != mask.shape or rewards.shape[0] % num_generations:
        raise ValueError(f"rewards {tuple(rewards.shape)} and mask {tuple(mask.shape)} must match and B must divide by {num_generations}")
    mask = mask.to(rewards.dtype)
    n_tokens = mask.sum(1).clamp(min=1)
    row_mean = (rewards * mask).sum(1) / n_tokens
    mu = row_mean.view(-1, num_generations).mean(1).repeat_interleave(num_generations)
    spread = (((rewards - mu[:, None]) ** 2) * mask).sum(1) / n_tokens
    sigma = (spread.view(-1, num_generations).sum(1) / (num_generations - 1)).sqrt().repeat_interleave(num_generations)
    return torch.where(mask.bool(), (rewards - mu[:, None]) / (sigma[:, None] + eps), torch.zeros_like(rewards))


def token_offsets(tokenizer, ids: Sequence[int]) -> list[tuple[int, int]]:
    """(start, end) character offsets of each token within `decode(ids)` (flow tokens kept).

    Special tokens that decode to nothing (EOS) get an empty span at the end of the text.
    """
    decode = functools.partial(tokenizer.decode, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    pieces = [decode([i]) for i in ids]
    if "".join(pieces) != decode(list(ids)):  # a character split over tokens: fall back to prefix lengths
        ends = [len(decode(list(ids[: k + 1]))) for k in range(len(ids))]
    else:
        ends = [sum(map(len, pieces[: k + 1])) for k in range(len(pieces))]
    starts = [0, *ends[:-1]]
    eos = tokenizer.eos_token_id
    return [(e, e) if i == eos else (s, e) for i, s, e in zip(ids, starts, ends)]


class MemoEnsemble:
    """Wraps an ensemble; a repeated `predict` on the same pairs returns the cached (mean, std)."""

    def __init__(self, ensemble):
        self.ensemble, self._key, self._value = ensemble, None, None

    def predict(self, prompts, flows, progress: bool = False):
        key = (tuple(prompts), tuple(flows))
        if key != self._key:
            self._key, self._value = key, self.ensemble.predict(prompts, flows, progress)
        return self._value


class SurrogateReward:
    """trl reward function: the uncertainty-aware surrogate reward; logs validity and the uncertain share.

    Called by trl as `reward(prompts, completions, user_prompt=[...], log_metric=fn, ...)`;
    `user_prompt` (a dataset column) is the raw prompt the surrogates were trained on.
    """

    __name__ = "surrogate"

    def __init__(self, shaped: ShapedReward):
        if not isinstance(shaped.full, MemoEnsemble):
            shaped.full = MemoEnsemble(shaped.full)  # per_token_rewards re-predicts the same pairs: cache them
        self.shaped = shaped

    def __call__(self, prompts, completions, user_prompt=None, log_metric=None, **kwargs) -> list[float]:
        users = list(user_prompt) if user_prompt is not None else list(prompts)
        valid = [self.shaped.validator(c) for c in completions]
        rewards = self.shaped.flow_rewards(users, completions, valid)
        idx = [i for i, ok in enumerate(valid) if ok]
        n_uncertain = 0
        if idx:
            _, std = self.shaped.full.predict([users[i] for i in idx], [completions[i] for i in idx])
            n_uncertain = int((std > self.shaped.cfg.tau).sum())
        if log_metric is not None:
            log_metric("validity", sum(valid) / len(valid))
            log_metric("share_uncertain", n_uncertain / len(valid))
        return rewards.tolist()


class FlowGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that samples with the project's loop and, optionally, uses per-token advantages (eq. 3).

    Args:
        shaped: the shaped surrogate reward.
        sampling: temperature/top-p/length/seed/bf16 of the sampling loop (seeded per step, so a
            resumed run samples what an uninterrupted one would).
        component_reward: per-token advantages from `shaped.per_token_rewards` (B, T); off = trl's (B,).
        logits_processor: HF logits processors applied at every sampling step (e.g. constrained decoding).
    """

    def __init__(self, *args, shaped: ShapedReward, sampling: SamplingConfig, component_reward: bool = True,
                 logits_processor: Sequence[LogitsProcessor] | None = None, **kwargs):
        self.reward_fn = SurrogateReward(shaped)
        super().__init__(*args, reward_funcs=[self.reward_fn], **kwargs)
        self.sampling, self.component_reward = sampling, component_reward
        self.logits_processor = list(logits_processor or [])
        self._texts: list[str] = []

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if self.args.use_vllm:  # grpo.use_vllm: trl's vLLM generation (no constrained decoding, vLLM's own seeding)
            completion_ids, logprobs = super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
            eos = self._tokenizer.eos_token_id
            self._texts = [self._tokenizer.decode([t for t in row if t != eos], skip_special_tokens=False,
                                                  clean_up_tokenization_spaces=False) for row in completion_ids]
            return completion_ids, logprobs
        device = self.accelerator.device
        tok = self._tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        rows = [torch.tensor(ids) for ids in prompt_ids]
        input_ids = pad(rows, padding_value=pad_id, padding_side="left").to(device)
        attention_mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="left").to(device)
        generator = torch.Generator(device=device).manual_seed(self.sampling.seed + self.state.global_step)
        model = self.accelerator.unwrap_model(self.model)
        # sample from the LoRA merged into the weights: on a small CPU model the adapter branch costs
        # as much as the layer itself, at every one of the ~100-250 decoding steps (docs/policy.md)
        merge = hasattr(model, "merge_adapter")
        if merge:
            model.merge_adapter()
        try:
            out = generate_ids(ModelScorer(model), input_ids, attention_mask, self.sampling, tok.eos_token_id, pad_id, generator, self.logits_processor)
        finally:
            if merge:
                model.unmerge_adapter()
        completion_ids, texts = [], []
        for row in out.tolist():
            end = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
            completion_ids.append(row[: end + 1] if end < len(row) else row)  # trl keeps the EOS token
            texts.append(tok.decode(row[:end], skip_special_tokens=False, clean_up_tokenization_spaces=False))
        self._texts = texts
        return completion_ids, None

    def _generate(self, prompts):
        out = list(super()._generate(prompts))
        out[3] = list(self._texts)  # trl decodes with skip_special_tokens=True, which would drop flow tokens
        return tuple(out)

    def forced_tokens(self, shape: tuple[int, int]) -> torch.Tensor:
        """(B, T) True where constrained decoding allowed one token only at that completion position."""
        forced = torch.zeros(shape, dtype=torch.bool)
        for proc in self.logits_processor:
            steps = getattr(proc, "forced", [])
            if steps:
                f = torch.stack(steps, 1)[:, : shape[1]]
                forced[: f.shape[0], : f.shape[1]] |= f.cpu()
        return forced

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        # A token the constraint forced was sampled with probability 1, whatever the unmasked model
        # says; scoring it with the unmasked log-prob pushes that log-prob down on every flow the
        # constraint had to finish, until the KL runs away (measured: KL 16-30 within 30-80 steps).
        # Forced tokens are left out of the loss and the KL (docs/policy.md, "importance ratio").
        forced = self.forced_tokens(tuple(out["completion_mask"].shape))
        share = float((forced & out["completion_mask"].cpu().bool()).sum() / out["completion_mask"].sum().clamp(min=1))
        self._metrics["train" if self.model.training else "eval"]["forced_token_share"].append(share)
        # trl's loss mask is completion_mask x tool_mask; completion_mask is also the attention mask, so the
        # forced positions go into tool_mask (attention still sees every token)
        keep = (~forced).to(out["completion_mask"].device, out["completion_mask"].dtype)
        out["tool_mask"] = keep if out.get("tool_mask") is None else out["tool_mask"] * keep
        if not self.component_reward:
            return out
        ids, mask = out["completion_ids"], out["completion_mask"]
        offsets = [token_offsets(self._tokenizer, row[m.bool()].tolist()) for row, m in zip(ids.cpu(), mask.cpu())]
        users = [x["user_prompt"] for x in inputs]
        per_token = self.reward_fn.shaped.per_token_rewards(users, self._texts, offsets)
        rewards = torch.zeros(ids.shape, dtype=torch.float32)
        for b, r in enumerate(per_token):
            rewards[b, : len(r)] = r
        out["advantages"] = group_token_advantages(rewards, mask.cpu(), self.num_generations).to(ids.device)
        token_mean = float((rewards * mask.cpu()).sum() / mask.sum().clamp(min=1))
        self._metrics["train" if self.model.training else "eval"]["token_reward_mean"].append(token_mean)
        return out


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
    """Rewrites reports/grpo/log.jsonl (one line per logged step) from the trainer's log history."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, **kwargs):
        write_jsonl(self.path, step_log(state.log_history))


def step_log(history: Sequence[dict]) -> list[dict]:
    """Per-step entries of a trainer log history (the final train summary left out)."""
    return [e for e in history if "reward" in e or "true_score_probe" in e]


def decode_graph(text: str) -> dict:
    """Runnable API graph of a policy-view flow (`flowrl.encoding.policy_view.policy_graph`)."""
    from flowrl.encoding.policy_view import policy_graph

    return policy_graph(text)


def probe_true_score(model, tokenizer, prompts: list[str], sampling: SamplingConfig, scorer, validator: Callable[[str], bool],
                     logits_processor: Sequence[LogitsProcessor] | None = None, decoder: Callable[[str], dict] = decode_graph) -> dict[str, float]:
    """Sample one flow per probe prompt and score the valid ones (decoded API graphs) with the true scorer.

    Returns:
        {"true_score_probe": mean true score of the valid flows (NaN if none), "probe_validity": valid share}.
    """
    samples = sample_flows(model, tokenizer, prompts, sampling, logits_processor=logits_processor)
    valid = [s for s in samples if validator(s.text)]
    scores = list(scorer.score([s.prompt for s in valid], [decoder(s.text) for s in valid])) if valid else []
    return {"true_score_probe": sum(scores) / len(scores) if scores else float("nan"), "probe_validity": len(valid) / max(len(samples), 1)}


def lora_config(cfg: GRPOStageConfig) -> LoraConfig:
    """A fresh LoRA on the projections only: lm_head and embed_tokens stay frozen (paper A.6.3)."""
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")


def vllm_kwargs(cfg: GRPOStageConfig) -> dict:
    """trl's vLLM generation (`use_vllm`, colocated on the training GPUs) when `grpo.use_vllm`; off by default.

    Raises:
        GRPODataError: use_vllm is on but vLLM is not installed.
    """
    if not cfg.use_vllm:
        return {"use_vllm": False}
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise GRPODataError("grpo.use_vllm is true but vLLM is not installed; pip install vllm on the GPU worker or set grpo.use_vllm: false")
    return {"use_vllm": True, "vllm_mode": "colocate"}


def trainer_args(cfg: GRPOStageConfig, policy: PolicyConfig, output_dir: Path, seed: int) -> GRPOConfig:
    """trl GRPOConfig from the `grpo` and `policy` sections (group baseline scaled by the group std)."""
    return GRPOConfig(
        **common_trainer_kwargs(output_dir, seed, policy.bf16, cfg.logging_steps, cfg.gradient_checkpointing),
        **vllm_kwargs(cfg),
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.num_epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        adam_beta2=cfg.adam_beta2,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        loss_type=cfg.loss_type,
        scale_rewards="group",
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens or policy.max_new_tokens,
        temperature=policy.temperature,
        top_p=policy.top_p or 1.0,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        log_completions=False,
    )


def load_prompts(path: Path, n: int | None, seed: int) -> list[str]:
    """Prompts of a prompts-stage file, shuffled with `seed`, at most `n` (None = all)."""
    rows = read_jsonl(path)
    prompts = [r.get("prompt") for r in rows]
    bad = next((i for i, p in enumerate(prompts, 1) if not (isinstance(p, str) and p.strip())), None)
    if bad is not None or not prompts:
        where = f"{path}:{bad}" if bad else str(path)
        raise GRPODataError(f"{where}: needs non-empty string 'prompt' fields; rerun the prompts stage (dvc repro prompts)")
    random.Random(seed).shuffle(prompts)
    return prompts[:n] if n else prompts


def run_fingerprint(params: Params, root: Path) -> str:
    """Short hash of what the GRPO weights depend on: policy/grpo/reward params, seed, prompts, SFT adapter, reward ensembles."""
    h = hashlib.sha256()
    sections = [params.policy.model_dump(mode="json"), params.grpo.model_dump(mode="json"), params.reward.model_dump(mode="json"), params.seed]
    h.update(json.dumps(sections, sort_keys=True).encode())
    files = [root / PROMPTS, root / SFT_DIR / "policy.json", *sorted((root / SFT_DIR).glob("*.safetensors")),
             *sorted((root / REWARD_DIR).glob("*/ensemble.json")), *sorted((root / REWARD_DIR).glob("*/member_*/train_stats.json"))]
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
    axes[0].fill_between(steps, [m - std.get(s, 0) for s, m in zip(steps, mean)], [m + std.get(s, 0) for s, m in zip(steps, mean)], alpha=0.2)
    for ax, key, title in ((axes[0], None, "surrogate reward (mean ± std)"), (axes[1], "true_score_probe", "true score, probe prompts"), (axes[2], "kl", "KL to SFT")):
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


def run(params: Params, root: Path = Path("."), *, validator: Callable[[str], bool] | None = None, scorer=None,
        decoder: Callable[[str], dict] = decode_graph, callbacks: Sequence[TrainerCallback] = (), logits_processor: Sequence[LogitsProcessor] | None = None) -> dict[str, float]:
    """Train the GRPO adapter; write models/grpo, reports/grpo/{metrics.json, log.jsonl, curves.png}.

    Args:
        validator: flow text -> valid? (default: decode + validate; all invalid until the codec exists).
        decoder: flow text -> API graph for the true scorer (default: `decode_flow`).
        scorer: the true scorer for the probe; default `load_scorer(params.scoring.scorer, params.scoring.options)`.
        callbacks: extra trainer callbacks (tests interrupt a run with one).
        logits_processor: processors for every sampling step (constrained decoding).
    """
    root = Path(root)
    cfg, seed = params.grpo, params.seed
    stage_start(params, "grpo", root)  # the device setting, and the cost estimate printed and logged
    validator = functools.lru_cache(maxsize=4096)(validator or flow_is_valid)
    on_scorer = cfg.reward == "scorer"
    needs = [root / SFT_DIR / "policy.json"] + ([] if on_scorer else [root / REWARD_DIR / "full" / "ensemble.json"])
    for need in needs:
        if not need.exists():
            raise GRPODataError(f"{need}: not found; run the sft and reward stages first (dvc repro sft reward)")
    train_prompts = load_prompts(root / PROMPTS, cfg.n_train_prompts, seed)
    probe = load_prompts(root / HOLDOUT, cfg.n_probe, seed) if cfg.n_probe else []
    if (probe or on_scorer) and scorer is None:
        try:
            from flowrl.scoring.base import load_scorer
        except ImportError as exc:
            raise GRPODataError(f"the probe needs flowrl.scoring.base ({exc}); install it or set grpo.n_probe: 0") from None
        scorer = load_scorer(params.scoring.scorer, params.scoring.options)

    model, tokenizer = load_sft_merged(root / SFT_DIR)
    if on_scorer:  # diagnostic: train on the true scorer (flowrl.reward.scorer_reward)
        shaped = ScorerReward(scorer, params.reward, validator, decoder)
    else:
        shaped = ShapedReward.load(root / REWARD_DIR, params.reward, validator=validator)
    max_new = cfg.max_new_tokens or params.policy.max_new_tokens
    sampling = SamplingConfig.from_policy(params.policy, seed, batch_size=cfg.batch_size, max_new_tokens=max_new)
    logits_processor = constraint_processors(params.policy, tokenizer, max_new) if logits_processor is None else logits_processor
    dataset = Dataset.from_list([{"prompt": format_prompt(p), "user_prompt": p} for p in train_prompts])
    ckpt_dir = root / CHECKPOINTS / f"run-{run_fingerprint(params, root)}"
    evaluate = functools.partial(probe_true_score, tokenizer=tokenizer, prompts=probe, sampling=sampling, scorer=scorer,
                                 validator=validator, logits_processor=logits_processor, decoder=decoder)
    probe_cb = ProbeCallback(lambda m: evaluate(m), cfg.probe_every if probe else 0)
    trainer = FlowGRPOTrainer(
        model=model, args=trainer_args(cfg, params.policy, ckpt_dir, seed), train_dataset=dataset, processing_class=tokenizer,
        peft_config=lora_config(cfg), callbacks=[probe_cb, LogFileCallback(root / LOG), *callbacks],
        shaped=shaped, sampling=sampling, component_reward=params.reward.component_reward and not on_scorer, logits_processor=logits_processor,
    )
    probe_cb.trainer = trainer
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.exists() else None
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - start

    out = root / OUT_DIR
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(str(tmp), safe_serialization=True)
    policy_cfg, sft_seed, spec = read_policy_spec(root / SFT_DIR)
    extra = {k: v for k, v in spec.items() if k not in ("policy", "seed", "base_vocab_size", "full_weights")}
    save_policy_spec(tmp, policy_cfg, sft_seed, int(spec["base_vocab_size"]), **extra, sft_dir=SFT_DIR, grpo=cfg.model_dump(mode="json"))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # the folder appears whole or not at all

    log = step_log(trainer.state.log_history)
    final_probe = {"true_score_probe": float("nan"), "probe_validity": float("nan")}
    if probe:  # the probe is seeded: a probe logged at the last step is what the final policy gives
        at_end = [e for e in log if e.get("step") == trainer.state.global_step and "probe_validity" in e]
        final_probe = {k: float("nan") if at_end[-1][k] is None else at_end[-1][k] for k in final_probe} if at_end else evaluate(trainer.model)
    write_jsonl(root / LOG, log)
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
