"""The product's inference: a trained policy (SFT, plus GRPO with dual-model guidance) turning prompts
into ComfyUI API-format workflows, with the checks a served request gets (flowrl.tracking.pyfunc wraps it
as an MLflow model).

Without a GRPO adapter the policy samples from the SFT policy alone (gamma is ignored, and each
result says so).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flowrl.errors import FlowRLError
from flowrl.io import read_json, write_json
from flowrl.policy.requests import check_sampling_params, read_prompts

if TYPE_CHECKING:
    from flowrl.comfy.object_info import ObjectInfo
    from flowrl.params.model import Params

SFT, GRPO = "sft", "grpo"  # the folders of a pipeline's models/ (and of the packaged model's artifacts)
BASE, SETTINGS = "base", "settings"  # the packaged model's other artifacts: a local base model, settings.json


class PolicyModelError(FlowRLError):
    """The policy folders to package or load are missing or incomplete."""


@dataclass(frozen=True)
class ServingSettings:
    """Defaults of the served model; `gamma`, `seed` and `temperature` can be overridden per request."""

    gamma: float = 1.5
    temperature: float = 0.9
    top_p: float | None = None
    max_new_tokens: int = 500
    batch_size: int = 8
    seed: int = 0
    bf16: bool = False
    max_prompt_tokens: int | None = None
    constrained: bool = True  # constrained decoding (policy.constrained)
    usable_retries: int = 2  # redraws of a flow that is not usable (policy.usable_retries)
    max_prompts_per_request: int = 32
    max_prompt_chars: int = 20_000

    @classmethod
    def from_params(cls, params: Params) -> ServingSettings:
        """Serving settings from the `policy` and `register` params sections."""
        policy, reg = params.policy, params.register
        return cls(
            gamma=policy.gamma,
            temperature=policy.temperature,
            top_p=policy.top_p,
            max_new_tokens=reg.max_new_tokens or policy.max_new_tokens,
            batch_size=reg.batch_size,
            seed=params.seed,
            bf16=policy.bf16,
            max_prompt_tokens=reg.max_prompt_tokens,
            constrained=policy.constrained,
            usable_retries=policy.usable_retries,
            max_prompts_per_request=reg.max_prompts_per_request,
            max_prompt_chars=reg.max_prompt_chars,
        )


def flow_to_workflow(text: str, prompt: str, seed: int = 0) -> tuple[dict | None, str | None]:
    """Decode and check an encoded flow (policy view: sampler seeds drawn from `seed`), then fill in the prompt.

    Returns:
        (API-format workflow with `prompt` filled in, None) or (None, why the flow is not usable).
    """
    from flowrl.comfy.graph import fill_prompt
    from flowrl.encoding.policy_view import check_flow_text

    check = check_flow_text(text, seed)
    if not check.usable:
        return None, "the sampled flow is not usable: " + "; ".join(check.problems[:10])
    return fill_prompt(check.graph, prompt), None


def local_base(sft_dir: Path) -> Path | None:
    """The base model file/folder to ship with the model (dir source, or a named .gguf), else None."""
    from flowrl.policy.loading import read_policy_spec

    cfg, _, _ = read_policy_spec(sft_dir)
    if cfg.source == "dir" or (cfg.source == "gguf" and cfg.model):
        return Path(cfg.model)
    return None


def _point_at_base(sft_dir: Path, base: Path) -> Path:
    """A view of `sft_dir` (symlinks) whose policy.json names the shipped `base` instead of the original path."""
    view = Path(tempfile.mkdtemp(prefix="flowrl-sft-"))
    for item in sft_dir.iterdir():
        if item.name != "policy.json":
            os.symlink(item.resolve(), view / item.name)
    spec = read_json(sft_dir / "policy.json")
    target = next(base.glob("*.gguf")) if spec["policy"]["source"] == "gguf" and base.is_dir() else base
    spec["policy"]["model"] = str(target)
    write_json(view / "policy.json", spec)
    return view


class FlowPolicy:
    """A loaded policy: SFT (+ GRPO with dual-model guidance when present) turning prompts into workflows."""

    def __init__(
        self,
        sft_dir: str | Path,
        grpo_dir: str | Path | None,
        settings: ServingSettings,
        base: str | Path | None = None,
    ):
        import torch

        from flowrl.policy.plain_llama import load_plain_policy
        from flowrl.policy.prompt_codes import PromptCodes

        sft_dir = Path(sft_dir)
        if not (sft_dir / "policy.json").exists():
            raise PolicyModelError(
                f"{sft_dir}: no policy.json, so no trained SFT policy there; run the sft stage (dvc repro sft)"
            )
        if base is not None:
            sft_dir = _point_at_base(sft_dir, Path(base))
        # fp32 sampling with LoRA can hit denormal floats and slow down 10-100x on CPU (docs/policy.md)
        torch.set_flush_denormal(True)
        self.settings = settings
        self.codes = PromptCodes.load(sft_dir)  # the prompt's code tokens, when the policy was trained with them
        self.guided = grpo_dir is not None and (Path(grpo_dir) / "adapter_config.json").exists()
        self.plain = load_plain_policy(sft_dir, grpo_dir)  # plain torch where the policy allows it: starts in seconds
        if self.plain is not None:
            self.model, self.tokenizer = self.plain[0], self.plain[2]
        elif self.guided:
            from flowrl.policy.decoding.guidance import load_guided_policy

            self.model, self.tokenizer = load_guided_policy(sft_dir, grpo_dir)
        else:
            from flowrl.policy.loading import load_sft_policy

            self.model, self.tokenizer = load_sft_policy(sft_dir)

    @classmethod
    def from_artifacts(cls, artifacts: dict[str, str | Path]) -> FlowPolicy:
        """Load from a packaged model's artifacts (name -> path): sft and settings, grpo and base when logged."""
        return cls(
            artifacts[SFT], artifacts.get(GRPO), ServingSettings(**read_json(artifacts[SETTINGS])), artifacts.get(BASE)
        )

    @classmethod
    def from_models_dir(cls, models_dir: str | Path, settings: ServingSettings) -> FlowPolicy:
        """Load from a pipeline `models/` folder: `sft/` and, when trained, `grpo/`."""
        models_dir = Path(models_dir)
        return cls(models_dir / SFT, models_dir / GRPO, settings)

    def prompt_budget(self) -> int:
        """Most prompt tokens that still leave room for the template and `max_new_tokens` in the context."""
        from flowrl.policy.template import format_prompt

        context = getattr(self.model.config, "max_position_embeddings", None) or 2048
        template = len(self.tokenizer(format_prompt("x"), add_special_tokens=True).input_ids) + (
            len(self.codes.centroids) if self.codes else 0
        )
        budget = context - self.settings.max_new_tokens - template
        if self.settings.max_prompt_tokens:
            budget = min(budget, self.settings.max_prompt_tokens)
        if budget < 1:
            raise PolicyModelError(
                f"max_new_tokens={self.settings.max_new_tokens} leaves no room for a prompt in the model's {context}-token context; lower register.max_new_tokens"
            )
        return budget

    def fit_prompt(self, prompt: str) -> tuple[str, str | None]:
        """The prompt the policy sees (cut to `prompt_budget()` tokens) and a note when it was cut."""
        budget = self.prompt_budget()
        ids = self.tokenizer(prompt.strip(), add_special_tokens=False).input_ids
        if len(ids) <= budget:
            return prompt, None
        cut = self.tokenizer.decode(ids[:budget], skip_special_tokens=True)
        return (
            cut,
            f"prompt truncated from {len(ids)} to {budget} tokens to fit the model context; the workflow keeps the full prompt",
        )

    def generate(
        self,
        prompts: list[str],
        gamma: float | None = None,
        seed: int | None = None,
        temperature: float | None = None,
        object_info: ObjectInfo | None = None,
    ) -> list[dict]:
        """One workflow per prompt.

        Args:
            prompts: non-empty strings (checked with `read_prompts`).
            gamma: guidance strength (>= 0); ignored without a GRPO adapter.
            seed, temperature: override the settings for this call.
            object_info: the user's ComfyUI (`flowrl.comfy.object_info`): decode only installed classes and
                files, and call a workflow valid only when it validates there.
        Returns:
            per prompt: {"prompt", "workflow" (API graph or None), "valid", "error", "flow" (encoded text), "method", "notes"}.
        """
        from flowrl.comfy.object_info import installed_workflow
        from flowrl.policy.decoding.constrained import constraint_processors
        from flowrl.policy.decoding.guidance import sample_guided
        from flowrl.policy.decoding.redraw import draw_usable
        from flowrl.policy.decoding.sampling import SamplingConfig, sample_flows
        from flowrl.policy.installed import installed_schema
        from flowrl.policy.plain_llama import sample_plain
        from flowrl.policy.prompt_codes import coded_prompts

        s = self.settings
        prompts = read_prompts(prompts, s.max_prompts_per_request, s.max_prompt_chars)
        gamma, seed, temperature = check_sampling_params(gamma, seed, temperature)
        gamma = s.gamma if gamma is None else gamma
        temperature = s.temperature if temperature is None else temperature
        cfg = SamplingConfig(
            temperature, s.top_p, s.max_new_tokens, s.batch_size, s.seed if seed is None else seed, s.bf16
        )
        fitted = [self.fit_prompt(p) for p in prompts]
        seen = [f for f, _ in fitted]
        schema, installed = installed_schema(self.tokenizer, object_info) if object_info is not None else (None, [])
        processors = constraint_processors(s, self.tokenizer, schema=schema)

        def sample(batch: list[str], at: SamplingConfig):
            batch = coded_prompts(self.codes, batch)
            if self.plain is not None:
                return sample_plain(self.plain, batch, at, gamma, processors)
            if self.guided:
                return sample_guided(self.model, self.tokenizer, batch, at, gamma, logits_processor=processors)
            return sample_flows(self.model, self.tokenizer, batch, at, logits_processor=processors)

        method = f"grpo_cfg_{gamma:g}" if self.guided else "sft"
        drawn = draw_usable(sample, seen, cfg, s.usable_retries)
        results = []
        for prompt, (_, note), kept in zip(prompts, fitted, drawn, strict=True):
            completion = kept.completion
            notes = [n for n in (note,) if n]
            if kept.draws > 1:
                notes.append(f"drawn {kept.draws} times: the earlier flows were not usable")
            if not self.guided:
                notes.append("no GRPO adapter in this model: sampled from the SFT policy, gamma ignored")
            if not completion.finished:
                notes.append(f"the flow hit the {s.max_new_tokens}-token limit before its end")
            workflow, error = flow_to_workflow(completion.text, prompt, cfg.seed)
            if object_info is not None:
                limited = (
                    "; ".join(installed or ["nothing to change"])
                    if processors
                    else "constrained decoding is off, so only checked"
                )
                notes.append(f"limited to what {object_info.source} has installed; {limited}")
                if workflow is not None:
                    workflow, error = installed_workflow(workflow, object_info)
            results.append(
                {
                    "prompt": prompt,
                    "workflow": workflow,
                    "valid": workflow is not None,
                    "error": error,
                    "flow": completion.text,
                    "method": method,
                    "notes": "; ".join(notes) or None,
                }
            )
        return results
