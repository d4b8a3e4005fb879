"""One pydantic model per params.yaml section: the base `Section`, the data stages' sections, evaluate, register and
ablations; the models' and training sections are in flowrl.params.training (flowrl.params.model assembles them
into `Params`).

Every field has a description; defaults equal params.yaml's values (tests/test_config.py compares).
"""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from flowrl.runtime.precision import resolve_bf16

# true, false or "auto": bf16 autocast only where the hardware computes in bf16 (flowrl.runtime.precision)
Bf16 = Annotated[bool, BeforeValidator(resolve_bf16)]

# Fields where infinity is a real setting ("no cutoff": the no_uncertainty ablation); elsewhere .inf and
# .nan are refused, since they would pass every range check and break sampling or training later.
INFINITY_ALLOWED = {"RewardConfig.tau"}


def _scalar_kinds(annotation: Any) -> set[type]:
    """The scalar types among bool/int/float that a field annotation (unions, Annotated, Optional) admits."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, Annotated):
        args = typing.get_args(annotation)
        return set().union(
            *(_scalar_kinds(a) for a in (args[:1] if typing.get_origin(annotation) is Annotated else args))
        )
    return {annotation} & {bool, int, float}


class Section(BaseModel):
    """A params.yaml section: unknown keys, non-finite floats and numbers of the wrong kind are refused."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _strict_numbers(cls, data: Any) -> Any:
        """Refuse bool for a number (`true` would become 1), a float for an integer (1e30, 2.5 would be cut),
        and NaN or infinity (outside INFINITY_ALLOWED)."""
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name)
            items = value if isinstance(value, list) else [value]
            if any(
                isinstance(v, float)
                and (math.isnan(v) or (math.isinf(v) and f"{cls.__name__}.{name}" not in INFINITY_ALLOWED))
                for v in items
            ):
                raise ValueError(f"{name}: {value!r} is not a finite number; give a finite value")
            if field is None or not isinstance(value, (bool, float)):
                continue
            kinds = _scalar_kinds(field.annotation)
            if isinstance(value, bool) and kinds and bool not in kinds:
                raise ValueError(f"{name}: {str(value).lower()} is a boolean, but {name} is a number; write a number")
            if isinstance(value, float) and int in kinds and float not in kinds:
                raise ValueError(
                    f"{name}: {value!r} is a decimal number, but {name} takes an integer; "
                    "write it without a decimal point or exponent"
                )
        return data


class PromptsConfig(Section):
    source: Literal["generator", "file", "civitai"] = Field("generator", description="Where prompts come from.")
    path: Path | None = Field(None, description="Prompt file (.jsonl, .csv, .txt) for source=file.")
    n_prompts: int = Field(10000, gt=0, description="Prompts kept after cleaning (train + holdout).")
    n_holdout: int = Field(500, ge=0, description="Prompts held out for evaluation.")
    strict: bool = Field(False, description="Fail on a malformed input line instead of skipping it.")
    min_chars: int = Field(10, ge=1, description="Shorter prompts are dropped.")
    max_chars: int = Field(1500, ge=1, description="Longer prompts are dropped.")
    civitai_base_url: str = Field(
        "https://civitai.com/api/v1", description="CivitAI API root (source=civitai); key from env CIVITAI_API_KEY."
    )
    civitai_page_size: int = Field(100, ge=1, le=200, description="Images per API page.")
    civitai_max_pages: int = Field(300, ge=1, description="Stop after this many pages (cached pages count).")
    civitai_nsfw: str = Field("None", description="API nsfw filter: None (safe only), Soft, Mature, X.")
    civitai_sort: str = Field("Most Reactions", description="API sort order.")
    civitai_cache: Path = Field(
        Path("data/cache/civitai_images.jsonl"),
        description="Fetched pages (JSONL) and last cursor; a rerun resumes from it.",
    )
    civitai_max_retries: int = Field(
        5, ge=0, description="Retries per page on HTTP 429/5xx, network errors, malformed pages."
    )
    civitai_backoff_s: float = Field(
        1.0, ge=0, description="Backoff base in seconds: base * 2**attempt, plus jitter (Retry-After wins on 429)."
    )

    @model_validator(mode="after")
    def _check(self) -> PromptsConfig:
        if self.min_chars > self.max_chars:
            raise ValueError("prompts.min_chars is larger than prompts.max_chars; lower min_chars or raise max_chars")
        if self.n_holdout >= self.n_prompts:
            raise ValueError("prompts.n_holdout must be smaller than prompts.n_prompts; lower n_holdout")
        if self.source == "file" and self.path is None:
            raise ValueError("prompts.source is 'file' but prompts.path is empty; set prompts.path")
        return self


class FlowsConfig(Section):
    variants_per_base: int = Field(60, ge=0, description="Augmented variants per base flow (paper: 2,000).")
    extra_base_dirs: list[Path] = Field(
        default_factory=list, description="Folders of real workflow files to import as base flows."
    )
    n_sft_pairs: int = Field(6000, gt=0, description="Random (prompt, encoded flow) SFT pairs (paper: 500K).")


class EncodeConfig(Section):
    report_sample: int = Field(300, ge=1, description="Flows sampled for the token-count report (JSON vs encoded).")


class ScoringConfig(Section):
    scorer: str = Field(
        "flowrl.scoring.simulator:PreferenceSimulator", description="'package.module:ClassName' of the scorer."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments passed to the scorer.")


class TripletsConfig(Section):
    """(prompt, flow, score) pairs across all augmented flows, split by prompt and by flow."""

    n_triplets: int = Field(
        100000, gt=0, description="(prompt, flow, score) triplets over train+val+test (paper: 100K over 330 flows)."
    )
    n_prompts: int | None = Field(
        None,
        gt=0,
        description="Distinct training prompts drawn from (shuffled with the seed) before the split; empty = all. Bounds the reward stage's prompt-embedding cost.",
    )
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of prompts, and of triplets, for validation.")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="Share of prompts, and of triplets, held out for test.")
    flow_test_fraction: float = Field(
        0.15,
        ge=0,
        lt=1,
        description="Share of augmented flows held out of train/val; half the test triplets pair held-out prompts with them (flow_split: unseen).",
    )
    n_probe_prompts: int = Field(
        100,
        ge=0,
        description="Held-out prompts scored against the probe flows, to measure how prompt-dependent the best flow is.",
    )
    n_probe_flows: int = Field(330, gt=0, description="Scored flows (a seeded sample) in the probe grid.")


class EvaluateConfig(Section):
    """The `evaluate` stage: methods compared on held-out prompts, win rates, novelty (paper §4, Tables 1-3)."""

    n_prompts: int | None = Field(
        128,
        gt=0,
        description="Evaluate on the first n prompts of the holdout's test half (flowrl.data.prompts.holdout_split); empty = all of them.",
    )
    split: Literal["test", "dev"] = Field(
        "test",
        description="Which half of the holdout to evaluate: test (what is reported) or dev (what learning rates, gammas, temperatures and rules are tuned on).",
    )
    methods: list[str] = Field(
        default_factory=list,
        description="Methods to run (e.g. fixed_popular, comfygen, sft, grpo_cfg_1.5); empty = every method whose inputs exist.",
    )
    gammas: list[float] = Field(
        default_factory=lambda: [1.5, 2.0],
        description="Dual-model guidance strengths evaluated as grpo_cfg_<gamma> (paper Table 2: 1.5 and 2).",
    )
    rerank_n: int = Field(
        5, gt=0, description="sft_rerank: SFT flows sampled per prompt, the reward-ensemble best kept (paper 4.2: 5)."
    )
    comfygen_k: int = Field(
        50,
        gt=0,
        description="comfygen: nearest training prompts (TF-IDF char n-grams) whose triplets vote for the flow.",
    )
    batch_size: int = Field(32, gt=0, description="Prompts per sampling batch for the policy methods.")
    max_new_tokens: int | None = Field(
        None, gt=0, description="Token cap per sampled flow; empty = policy.max_new_tokens."
    )
    samples_per_prompt: int = Field(
        2,
        ge=1,
        description="Flows each method gives per prompt (policy methods sample anew, seeded); scores are averaged per prompt before paired comparisons.",
    )
    nld_pairs: int = Field(
        2000, gt=0, description="Random pairs of training flows for the mean NLD that normalizes novelty."
    )
    reference: str = Field("comfygen", description="Method the summary's headline win rates are measured against.")

    @model_validator(mode="after")
    def _check(self) -> EvaluateConfig:
        if any(g < 0 for g in self.gammas):
            raise ValueError("evaluate.gammas must be >= 0; remove the negative guidance strengths")
        return self


class RegisterConfig(Section):
    """The `register` stage and the served policy: MLflow model name, promotion metric, serving defaults."""

    model_name: str = Field("flowrl-policy", min_length=1, description="Registered model name in the MLflow registry.")
    metric: str = Field(
        "win_rate_grpo_cfg_1.5_vs_comfygen",
        min_length=1,
        description="Headline number recorded on each version, from the evaluate report (a dotted path reaches nested keys); promotion is decided on the paired mean score (`min_se`).",
    )
    metric_files: list[Path] = Field(
        default_factory=lambda: [Path("reports/evaluate/summary.json"), Path("reports/evaluate/metrics.json")],
        description="Evaluate reports searched, in order, for `metric` (relative to the repository root).",
    )
    min_se: float = Field(
        2.0,
        ge=0,
        description="Promote only when the paired gain in mean score over the champion (same profile, scorer and evaluation prompts) exceeds this many standard errors.",
    )
    champion_alias: str = Field("champion", min_length=1, description="Alias of the version that is served.")
    challenger_alias: str = Field(
        "challenger", min_length=1, description="Alias of a registered version that did not beat the champion."
    )
    batch_size: int = Field(8, gt=0, description="Prompts sampled together by the served model.")
    max_new_tokens: int | None = Field(
        None, gt=0, description="Token cap of a served flow; empty = policy.max_new_tokens."
    )
    max_prompt_tokens: int | None = Field(
        256,
        gt=0,
        description="Served prompts longer than this (in tokens) are cut before sampling, with a note; empty = whatever fits the model's context.",
    )
    max_prompts_per_request: int = Field(
        32,
        gt=0,
        le=10_000,
        description="Most prompts one request to the served model (or one `flowrl generate`) may carry; more is refused with HTTP 400.",
    )
    max_prompt_chars: int = Field(
        20_000,
        gt=0,
        le=1_000_000,
        description="Longest prompt accepted, in characters; longer is refused with HTTP 400 (prompts within it that exceed the token budget are cut, with a note).",
    )


class AblationsConfig(Section):
    """The ablation sweep (paper Table 3): which variants run, and the methods their rows compare."""

    variants: list[str] = Field(
        default_factory=lambda: [
            "prefix_reward",
            "no_uncertainty",
            "ensemble_1",
            "ensemble_3",
            "ensemble_5",
            "no_sft",
            "no_grpo",
            "comfygen",
        ],
        description="Variants to run (flows/ablations.py VARIANTS): no_prefix_reward (the paper's) or prefix_reward (cpu, which trains without it), no_uncertainty, ensemble_<n>, no_sft, no_grpo, comfygen.",
    )
    full_method: str = Field(
        "grpo_cfg_1.5",
        min_length=1,
        description="Evaluate method of the full model; each variant row is its own flow for this method (or the variant's method) compared against it.",
    )
    workspace: Path = Field(
        Path("ablations"), description="Folder (relative to the repository root) holding one workspace per variant."
    )
    link_data: bool = Field(True, description="Reuse data/ and the untouched models by symlink (false: copy them).")
