"""The prompts stage end to end on tiny configs, written into tmp_path."""

import json
from collections import Counter

import pytest

from flowrl.data.prompt_generator import FAMILIES
from flowrl.data.prompt_sources import PromptSourceError
from flowrl.data.prompts import run
from flowrl.io import read_jsonl
from flowrl.params.model import Params
from tests.conftest import shared_path

CONTRACT_FIELDS = {"id", "prompt", "negative_prompt", "source"}


def _params(**prompts):
    return Params.model_validate({"seed": 11, "prompts": prompts})


def _outputs(root):
    train = read_jsonl(root / "data/prompts/train.jsonl")
    holdout = read_jsonl(root / "data/prompts/holdout.jsonl")
    metrics = json.loads((root / "reports/prompts/metrics.json").read_text())
    return train, holdout, metrics


def test_generator_source(tmp_path):
    metrics = run(_params(source="generator", n_prompts=120, n_holdout=20), tmp_path)
    train, holdout, written = _outputs(tmp_path)
    assert written == metrics
    assert (len(train), len(holdout)) == (100, 20)
    assert metrics["n_train"] == 100 and metrics["n_holdout"] == 20 and metrics["n_kept"] == 120
    assert all(CONTRACT_FIELDS | {"family"} == set(r) for r in train + holdout)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in holdout}
    assert len({r["id"] for r in train + holdout}) == 120
    assert Counter(r["family"] for r in train + holdout) == {family: 12 for family in FAMILIES}
    # Same seed, same files.
    before = (tmp_path / "data/prompts/train.jsonl").read_text()
    run(_params(source="generator", n_prompts=120, n_holdout=20), tmp_path)
    assert (tmp_path / "data/prompts/train.jsonl").read_text() == before


def test_file_source_counts_drops(tmp_path):
    lines = [
        json.dumps({"prompt": f"a red fox number {i} in the snow", "negative_prompt": "blurry"}) for i in range(30)
    ]
    lines += [
        json.dumps({"prompt": "A RED FOX NUMBER 0, in the snow"}),
        "{broken",
        json.dumps({"prompt": "nude portrait in a studio"}),
        json.dumps({"prompt": "tiny"}),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    metrics = run(_params(source="file", path="in.jsonl", n_prompts=25, n_holdout=5), tmp_path)
    assert metrics["n_in"] == 33 and metrics["n_malformed_lines"] == 1
    assert (
        metrics["dropped_duplicate"] == 1
        and metrics["dropped_unsafe_sexual"] == 1
        and metrics["dropped_too_short"] == 1
    )
    assert metrics["n_clean"] == 30 and metrics["n_kept"] == 25
    train, holdout, _ = _outputs(tmp_path)
    assert (len(train), len(holdout)) == (20, 5)
    assert all(set(r) == CONTRACT_FIELDS and r["negative_prompt"] == "blurry" for r in train)


def test_file_source_strict_fails(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"prompt": "a red fox in the snow"}\n{broken\n')
    with pytest.raises(PromptSourceError, match=r"in\.jsonl:2"):
        run(_params(source="file", path="in.jsonl", n_prompts=10, n_holdout=1, strict=True), tmp_path)
    assert not (tmp_path / "data/prompts/train.jsonl").exists()


def test_too_few_prompts_is_an_error(tmp_path):
    (tmp_path / "in.txt").write_text("a red fox in the snow\na castle at dawn on a hill\n")
    with pytest.raises(PromptSourceError, match="only 2 prompts left.*n_holdout=5"):
        run(_params(source="file", path="in.txt", n_prompts=50, n_holdout=5), tmp_path)


def test_shared_civitai_prompts(tmp_path):
    path = shared_path("data", "civitai", "prompts.jsonl")
    metrics = run(_params(source="file", path=str(path), n_prompts=2000, n_holdout=100), tmp_path)
    train, holdout, _ = _outputs(tmp_path)
    assert (len(train), len(holdout)) == (1900, 100)
    assert metrics["n_in"] == 10000 and metrics["n_malformed_lines"] == 0
    assert any(r["source"].startswith("dfanr/") for r in train)
