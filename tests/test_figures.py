"""The README's headline figures are the committed metrics files' numbers, and name the run's commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flowrl.io import write_json
from flowrl.pipeline.figures import COMMIT, FIGURES, disagreement, render
from flowrl.pipeline.stages import STAGES

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)


def test_each_figure_is_read_from_its_metrics_file(tmp_path):
    for stage in {f.stage for f in FIGURES}:
        write_json(tmp_path / STAGES[stage].metrics, {f.key: 0.5 for f in FIGURES if f.stage == stage} | {"steps": 80})
    write_json(
        tmp_path / STAGES["sft"].metrics, {"perplexity": 1.2549, "usable": 0.9375, "validity_unconstrained": None}
    )
    block = render(tmp_path, "abc1234")
    assert COMMIT.search(block).group(1) == "abc1234"
    assert "| SFT held-out perplexity | 1.25 | `reports/sft/metrics.json` | `perplexity` |" in block
    assert "| SFT usable flows, constrained | 93.8% |" in block and "| SFT valid flows, unconstrained | – |" in block
    assert (
        "| GRPO steps | 80 |" in block
        and "| evaluate mean score, sft | 0.500 | `reports/evaluate/summary.json` |" in block
    )


def test_the_readme_figures_agree_with_the_committed_metrics():
    if "dvc.lock" not in _git("ls-files", "dvc.lock").stdout.split():
        pytest.skip("no pipeline run committed yet (dvc.lock and reports/*/metrics.json)")
    assert disagreement(REPO) is None
