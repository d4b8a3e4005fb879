"""The `validate` stage: Great Expectations suites over every data artifact.

A failed expectation stops the pipeline with a readable summary (reports/validate/summary.md)
and the Great Expectations Data Docs (reports/validate/data_docs/index.html).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flowrl.comfy.validate import validate_graph
from flowrl.encoding.codec import canonical_form, decode_flow, encode_flow
from flowrl.errors import FlowRLError
from flowrl.io import read_jsonl, write_json, write_text
from flowrl.params.model import Params
from flowrl.pipeline.stages import EncodeFiles, FlowsFiles, PromptsFiles, TripletsFiles, ValidateFiles


class DataValidationError(FlowRLError):
    """One or more expectations failed; the message lists them and points at the Data Docs."""


@dataclass
class Suite:
    """A named table and the expectations it must meet."""

    name: str
    frame: pd.DataFrame
    expectations: list = field(default_factory=list)


def _flow_ok(graph: dict) -> bool:
    """The flow validates and survives encode -> decode unchanged (up to renumbering)."""
    try:
        return not validate_graph(graph) and decode_flow(encode_flow(graph)) == canonical_form(graph)
    except FlowRLError:
        return False


def _text_ok(text: str) -> bool:
    try:
        return not validate_graph(decode_flow(text))
    except FlowRLError:
        return False


def build_suites(params: Params, root: Path) -> list[Suite]:
    """Load every artifact into a table and declare what must hold for it."""
    import great_expectations as gx

    E = gx.expectations
    p = params.prompts
    prompts = pd.DataFrame(
        [
            {**row, "split": split}
            for split, path in (("train", PromptsFiles.train), ("holdout", PromptsFiles.holdout))
            for row in read_jsonl(root / path)
        ]
    )
    flows = pd.DataFrame(
        [
            {"id": r["id"], "ok": _flow_ok(r["graph"])}
            for path in (FlowsFiles.base, FlowsFiles.augmented)
            for r in read_jsonl(root / path)
        ]
    )
    encoded = pd.DataFrame(
        [{"id": r["id"], "text": r["text"], "ok": _text_ok(r["text"])} for r in read_jsonl(root / EncodeFiles.flows)]
    )
    pairs = pd.DataFrame(read_jsonl(root / EncodeFiles.sft_pairs))
    scored_ids = {r["id"] for r in read_jsonl(root / TripletsFiles.scored_flows)}
    triplets = pd.DataFrame(
        [
            {**row, "split": split}
            for split in ("train", "val", "test")
            for row in read_jsonl(root / TripletsFiles.split(split))
        ]
    )
    # A prompt may appear in one split only: count the distinct splits each prompt is in.
    triplets["n_splits_of_prompt"] = triplets.groupby("prompt")["split"].transform("nunique")
    triplets["flow_is_scored"] = triplets["flow_id"].isin(scored_ids)
    return [
        Suite(
            "prompts",
            prompts,
            [
                E.ExpectColumnValuesToNotBeNull(column="prompt"),
                E.ExpectColumnValueLengthsToBeBetween(column="prompt", min_value=p.min_chars, max_value=p.max_chars),
                E.ExpectColumnValuesToBeUnique(column="prompt"),  # also makes train and holdout disjoint
                E.ExpectColumnValuesToBeUnique(column="id"),
                E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "holdout"]),
            ],
        ),
        Suite(
            "flows",
            flows,
            [
                E.ExpectColumnValuesToBeUnique(column="id"),
                E.ExpectColumnValuesToBeInSet(column="ok", value_set=[True]),
            ],
        ),
        Suite(
            "encoded_flows",
            encoded,
            [
                E.ExpectColumnValuesToBeUnique(column="id"),
                E.ExpectColumnValuesToNotBeNull(column="text"),
                E.ExpectColumnValuesToBeInSet(column="ok", value_set=[True]),
            ],
        ),
        Suite(
            "sft_pairs",
            pairs,
            [
                E.ExpectColumnValuesToNotBeNull(column="prompt"),
                E.ExpectColumnValuesToNotBeNull(column="completion"),
                E.ExpectColumnValueLengthsToBeBetween(column="completion", min_value=1),
            ],
        ),
        Suite(
            "triplets",
            triplets,
            [
                E.ExpectColumnValuesToNotBeNull(column="score"),
                E.ExpectColumnValuesToBeBetween(column="score", min_value=0.0, max_value=1.0),
                E.ExpectColumnValuesToBeInSet(column="n_splits_of_prompt", value_set=[1]),
                E.ExpectColumnValuesToBeInSet(column="flow_is_scored", value_set=[True]),
                E.ExpectColumnValuesToNotBeNull(column="flow"),
            ],
        ),
    ]


def check(suites: list[Suite], docs_dir: Path) -> tuple[dict[str, float], list[str]]:
    """Run the suites; build Data Docs in `docs_dir`; return metrics and failure lines."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    shutil.rmtree(docs_dir, ignore_errors=True)
    ctx = gx.get_context(mode="ephemeral")
    ctx.add_data_docs_site(
        site_name="flowrl",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    source = ctx.data_sources.add_pandas("flowrl")
    metrics: dict[str, float] = {}
    failures: list[str] = []
    for suite in suites:
        batch = source.add_dataframe_asset(suite.name).add_batch_definition_whole_dataframe("all")
        gx_suite = ctx.suites.add(gx.ExpectationSuite(name=suite.name, expectations=suite.expectations))
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=suite.name, data=batch, suite=gx_suite))
        result = vd.run(batch_parameters={"dataframe": suite.frame})
        metrics[f"{suite.name}_rows"] = len(suite.frame)
        metrics[f"{suite.name}_failed_expectations"] = sum(not r.success for r in result.results)
        for r in result.results:
            if not r.success:
                cfg = r.expectation_config
                examples = (r.result or {}).get("partial_unexpected_list", [])[:3]
                failures.append(
                    f"{suite.name}: {cfg.type} on {cfg.kwargs.get('column')!r}: "
                    f"{(r.result or {}).get('unexpected_count', '?')} bad rows, e.g. {examples}"
                )
    ctx.build_data_docs()
    return metrics, failures


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """Validate every data artifact; raise DataValidationError (with a readable report) on failure."""
    out = root / ValidateFiles.dir
    metrics, failures = check(build_suites(params, root), out / "data_docs")
    metrics["failed_expectations"] = len(failures)
    summary = "# Data validation\n\n" + (
        "All expectations met.\n" if not failures else "\n".join(f"- {f}" for f in failures) + "\n"
    )
    write_text(out / "summary.md", summary)
    write_json(out / "metrics.json", metrics)
    if failures:
        raise DataValidationError(
            f"{len(failures)} data expectation(s) failed:\n"
            + "\n".join(f"  - {f}" for f in failures)
            + f"\nSee {out / 'summary.md'} and {out / 'data_docs/index.html'}; fix the stage that wrote the data and rerun."
        )
    return metrics
