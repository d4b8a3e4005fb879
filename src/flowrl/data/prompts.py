"""Prompts stage: gather prompts (generator, file or CivitAI API), clean them, split train/holdout.

Writes data/prompts/{train,holdout}.jsonl with rows {"id", "prompt", "negative_prompt", "source"}
(+ "family" for generated prompts) and reports/prompts/metrics.json.
"""

from __future__ import annotations

import random
from pathlib import Path

from flowrl.data.civitai_api import CivitaiClient, fetch_prompts
from flowrl.data.prompt_cleaning import clean_prompts, prompt_id, split_holdout
from flowrl.data.prompt_generator import generate_prompts
from flowrl.data.prompt_sources import PromptSourceError, read_prompt_file
from flowrl.io import write_json, write_jsonl
from flowrl.params.model import Params
from flowrl.pipeline.stages import STAGES, PromptsFiles

ROW_FIELDS = ("id", "prompt", "negative_prompt", "source", "family")


def gather(params: Params, root: Path) -> tuple[list[dict], dict[str, float]]:
    """Raw rows from the configured source, and source-specific metrics."""
    cfg = params.prompts
    if cfg.source == "generator":
        # Distinct and safe by construction, families in equal shares (only tight length bounds drop any).
        return generate_prompts(cfg.n_prompts, params.seed), {}
    if cfg.source == "file":
        path = cfg.path if cfg.path.is_absolute() else root / cfg.path
        result = read_prompt_file(path, strict=cfg.strict)
        return result.rows, {"n_malformed_lines": float(len(result.malformed))}

    client = CivitaiClient(
        base_url=cfg.civitai_base_url,
        page_size=cfg.civitai_page_size,
        nsfw=cfg.civitai_nsfw,
        sort=cfg.civitai_sort,
        max_retries=cfg.civitai_max_retries,
        backoff_s=cfg.civitai_backoff_s,
        seed=params.seed,
    )
    try:
        # Fetch twice what is kept: cleaning drops duplicates and unsafe prompts.
        fetched = fetch_prompts(client, 2 * cfg.n_prompts, cfg.civitai_max_pages, root / cfg.civitai_cache)
    finally:
        client.close()
    return fetched.rows, {
        "n_api_pages": float(fetched.n_pages),
        "n_api_pages_cached": float(fetched.n_pages_cached),
        "n_api_retries": float(fetched.n_retries),
        "n_api_items_without_prompt": float(fetched.n_items_without_prompt),
    }


def holdout_split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(dev, test) halves of the holdout rows, in file order: tune (e.g. the GRPO probe) on dev, report on test.

    A row's half is the parity of its prompt's stable hash (`prompt_id`), so it never depends on which
    other prompts are held out: changing prompts.n_holdout only adds or drops rows in each half.
    """
    halves: tuple[list[dict], list[dict]] = ([], [])
    for row in rows:
        halves[int(prompt_id(row["prompt"])[2:], 16) % 2].append(row)
    return halves


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """Run the prompts stage; return its metrics (also written to reports/prompts/metrics.json)."""
    cfg = params.prompts
    root = Path(root)
    raw, metrics = gather(params, root)
    cleaned = clean_prompts(raw, cfg.min_chars, cfg.max_chars)
    kept = cleaned.rows
    if len(kept) <= cfg.n_holdout:
        raise PromptSourceError(
            f"prompts ({cfg.source}): only {len(kept)} prompts left after cleaning (dropped: {dict(cleaned.dropped)}), "
            f"not more than prompts.n_holdout={cfg.n_holdout}; give more prompts or lower n_holdout"
        )
    if len(kept) > cfg.n_prompts:
        kept = random.Random(params.seed).sample(kept, cfg.n_prompts)
    rows = [{"id": prompt_id(r["prompt"]), **{k: r[k] for k in ROW_FIELDS[1:] if k in r}} for r in kept]
    train, holdout = split_holdout(rows, cfg.n_holdout, params.seed)
    write_jsonl(root / PromptsFiles.train, train)
    write_jsonl(root / PromptsFiles.holdout, holdout)
    metrics.update({"n_in": float(cleaned.n_in)})
    metrics.update({f"dropped_{reason}": float(n) for reason, n in sorted(cleaned.dropped.items())})
    metrics.update(
        {
            "n_clean": float(len(cleaned.rows)),
            "n_kept": float(len(rows)),
            "n_train": float(len(train)),
            "n_holdout": float(len(holdout)),
        }
    )
    write_json(root / STAGES["prompts"].metrics, metrics)
    return metrics
