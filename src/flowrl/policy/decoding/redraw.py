"""Redraw unusable flows: what inference hands a user is a flow a person could run.

Constrained decoding guarantees a flow that decodes and validates, but not every rule of `usable`
(no orphan or duplicate node, refiner conditioning on the refiner, two-pass samplers that hand over
cleanly where the field order let the constraint see it too late): those are checked after
sampling. At inference (evaluate, `flowrl generate`, the served model) a prompt whose flow fails
the check is sampled again, with another seed, up to `retries` more times. GRPO never redraws:
it must see, and be penalised for, the unusable flows its policy writes. The evaluation reports
the first-draw usable rate beside the delivered one, so what the model learnt stays visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from flowrl.encoding.policy_view import check_flow_text
from flowrl.policy.decoding.sampling import Completion, SamplingConfig

SEED_STEP = 7919  # draw k samples with seed + k * SEED_STEP


@dataclass(frozen=True)
class Drawn:
    """The completion kept for one prompt, and how many draws it took (1 = the first was usable)."""

    completion: Completion
    draws: int


def draw_usable(
    sample: Callable[[list[str], SamplingConfig], list[Completion]],
    prompts: Sequence[str],
    cfg: SamplingConfig,
    retries: int,
) -> list[Drawn]:
    """Sample one flow per prompt; redraw the prompts whose flow is not usable, at most `retries` times.

    Args:
        sample: (prompts, sampling config) -> one completion per prompt.
        prompts: the prompts, in order.
        cfg: the sampling config of the first draw; redraw k uses seed `cfg.seed + k * SEED_STEP`.
        retries: extra draws allowed per prompt (0 = never redraw).
    Returns:
        per prompt, the first usable completion, or the last one drawn when none was usable.
    """
    prompts = list(prompts)
    kept = [Drawn(c, 1) for c in sample(prompts, cfg)]
    for draw in range(1, retries + 1):
        again = [i for i, d in enumerate(kept) if not check_flow_text(d.completion.text).usable]
        if not again:
            break
        redo = sample([prompts[i] for i in again], replace(cfg, seed=cfg.seed + draw * SEED_STEP))
        for i, completion in zip(again, redo, strict=True):
            kept[i] = Drawn(completion, draw + 1)
    return kept
