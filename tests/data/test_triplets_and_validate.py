"""The triplets and validate stages on the tiny profile's real upstream data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from flowrl.data import flows, prompts, triplets, validate
from flowrl.encoding import stage as encode
from flowrl.errors import FlowRLError
from flowrl.io import read_jsonl, write_jsonl
from flowrl.params.model import resolve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_params():
    return resolve(yaml.safe_load((REPO / "params.yaml").read_text()), "tiny")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, tiny_params):
    """prompts -> flows -> encode -> triplets, once for the module."""
    root = tmp_path_factory.mktemp("pipeline")
    for stage in (prompts, flows, encode, triplets):
        stage.run(tiny_params, root)
    return root


def _copy(root: Path, tmp_path: Path) -> Path:
    shutil.copytree(root / "data", tmp_path / "data")
    return tmp_path


def test_triplets_are_split_by_prompt_and_normalised(upstream, tiny_params):
    rows = {s: read_jsonl(upstream / f"data/triplets/{s}.jsonl") for s in triplets.SPLITS}
    prompts_by_split = {s: {r["prompt"] for r in rs} for s, rs in rows.items()}
    assert not prompts_by_split["train"] & prompts_by_split["val"]
    assert not prompts_by_split["train"] & prompts_by_split["test"]
    assert sum(len(r) for r in rows.values()) == tiny_params.triplets.n_triplets
    scores = [r["score"] for rs in rows.values() for r in rs]
    assert min(scores) >= 0.0 and max(scores) <= 1.0 and max(scores) > min(scores)
    norm = triplets.ScoreNormalizer.load(upstream / "data/triplets/normalization.json")
    assert all(r["score"] == pytest.approx(norm(r["raw_score"])) for r in rows["val"])


def test_pairs_span_all_flows_and_hold_out_flows_for_test(upstream, tiny_params):
    rows = {s: read_jsonl(upstream / f"data/triplets/{s}.jsonl") for s in triplets.SPLITS}
    scored = read_jsonl(upstream / "data/triplets/scored_flows.jsonl")
    augmented = read_jsonl(upstream / "data/flows/augmented.jsonl")
    split_of = {r["id"]: r["split"] for r in scored}
    assert set(split_of.values()) == {"seen", "unseen"}
    n_unseen = round(len(augmented) * tiny_params.triplets.flow_test_fraction)
    assert sum(v == "unseen" for v in split_of.values()) <= n_unseen
    # train and val never see a held-out flow; test has both kinds, labelled
    assert all(split_of[r["flow_id"]] == "seen" == r["flow_split"] for s in ("train", "val") for r in rows[s])
    assert {r["flow_split"] for r in rows["test"]} == {"seen", "unseen"}
    assert all(split_of[r["flow_id"]] == r["flow_split"] for r in rows["test"])
    # pairs are spread over (nearly) all training flows, not a fixed small scored set
    seen_flows = {r["flow_id"] for r in rows["train"]}
    n_seen = len(augmented) - n_unseen
    assert len(seen_flows) >= min(n_seen, len(rows["train"])) * 0.9
    used = {r["flow_id"] for s in triplets.SPLITS for r in rows[s]}
    assert used <= set(split_of)


def test_balanced_draw_spreads_evenly():
    import numpy as np

    counts = np.bincount(triplets.balanced_draw(100, 7, np.random.default_rng(0)), minlength=7)
    assert counts.max() - counts.min() <= 1


def test_metrics_report_prompt_dependence(upstream):
    metrics = json.loads((upstream / "reports/triplets/metrics.json").read_text())
    assert 0.0 <= metrics["best_single_flow_share"] <= 1.0
    assert metrics["n_distinct_best_flows"] >= 2  # the best flow depends on the prompt


def test_best_single_flow_share():
    import numpy as np

    assert triplets.best_single_flow_share(np.array([[3.0, 1.0], [3.0, 2.0]])) == 1.0
    assert triplets.best_single_flow_share(
        np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    ) == pytest.approx(1 / 3)


def test_unknown_scorer_fails_before_any_work(tmp_path, tiny_params):
    params = tiny_params.model_copy(
        update={"scoring": tiny_params.scoring.model_copy(update={"scorer": "nope.module:Nothing"})}
    )
    with pytest.raises(FlowRLError, match="nope.module"):
        triplets.run(params, tmp_path)
    assert not (tmp_path / "data").exists()


def test_validate_passes_on_good_data(upstream, tiny_params, tmp_path):
    root = _copy(upstream, tmp_path)
    metrics = validate.run(tiny_params, root)
    assert metrics["failed_expectations"] == 0
    assert (root / "reports/validate/data_docs/index.html").exists()


def test_validate_stops_on_bad_data_with_a_readable_report(upstream, tiny_params, tmp_path):
    root = _copy(upstream, tmp_path)
    train = read_jsonl(root / "data/prompts/train.jsonl")
    holdout = read_jsonl(root / "data/prompts/holdout.jsonl")
    write_jsonl(root / "data/prompts/holdout.jsonl", holdout + [train[0]])  # a prompt in both splits
    augmented = read_jsonl(root / "data/flows/augmented.jsonl")
    node = next(iter(augmented[0]["graph"].values()))
    node["class_type"] = "NoSuchNode"
    write_jsonl(root / "data/flows/augmented.jsonl", augmented)
    with pytest.raises(validate.DataValidationError) as err:
        validate.run(tiny_params, root)
    message = str(err.value)
    assert "prompts: expect_column_values_to_be_unique on 'prompt'" in message
    assert "flows: expect_column_values_to_be_in_set on 'ok'" in message
    assert "data_docs/index.html" in message
    summary = (root / "reports/validate/summary.md").read_text()
    assert summary.count("\n- ") >= 2
