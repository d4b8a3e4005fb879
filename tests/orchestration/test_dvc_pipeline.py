"""`dvc repro` on the tiny profile: stages run as flows, a second repro does nothing, a changed
parameter reruns only the stages that read it, and a change to an inactive profile reruns nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.local_server import local_prefect_server

REPO = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).with_name("dvc"))
KEEP = ["src", "flows", "tasks", "dvc.yaml", "params.yaml", "pyproject.toml", ".dvc", ".dvcignore", ".gitignore"]
DATA_STAGES = ["prompts", "flows", "encode", "triplets", "validate"]


SERVER_ENV: dict[str, str] = {}  # PREFECT_API_URL of the module's one Prefect server (`workspace`)


def _run(args: list[str], cwd: Path) -> str:
    # the copy's own code, not whatever the environment's editable install points at, and its own MLflow store
    env = {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        **SERVER_ENV,
        "PYTHONPATH": str(cwd / "src"),
    }
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A copy of the project (code and pipeline files only) on the tiny profile, data stages reproduced.

    The stages talk to one Prefect server for the module, as under `make pipeline` (flows.local_server),
    instead of each starting a temporary one."""
    with local_prefect_server(tmp_path_factory.mktemp("prefect_home")) as env:
        SERVER_ENV.update(PREFECT_API_URL=env["PREFECT_API_URL"], PREFECT_HOME=env["PREFECT_HOME"])
        yield _workspace(tmp_path_factory.mktemp("workspace"))
        SERVER_ENV.clear()


def _workspace(root: Path) -> Path:
    for name in KEEP:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(
                src,
                root / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "tmp", "cache", "config.local"),
            )
        else:
            shutil.copy2(src, root / name)
    (root / ".venv").symlink_to(Path(sys.executable).parents[1])
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["profile"] = "tiny"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "t"],
    ):
        _run(cmd, root)
    out = _run([DVC, "repro", "validate"], root)
    assert _ran(out) == ["params", *DATA_STAGES]
    return root


def test_second_repro_does_nothing(workspace):
    out = _run([DVC, "repro", "validate"], workspace)
    assert _ran(out) == []
    assert "Data and pipelines are up to date" in _run([DVC, "status", "validate"], workspace)


def test_every_stage_left_a_flow_run_and_mlflow_run(workspace):
    import urllib.request

    import mlflow

    request = urllib.request.Request(
        f"{SERVER_ENV['PREFECT_API_URL']}/flow_runs/filter",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:  # the module's one server saw every stage's flow run
        states = {run["name"]: run["state_type"] for run in json.load(resp)}
    assert set(DATA_STAGES) <= set(states) and set(states.values()) == {"COMPLETED"}

    mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow/mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["flowrl-tiny"])
    assert sorted(runs["tags.flowrl.stage"]) == sorted(DATA_STAGES)
    metrics = yaml.safe_load((workspace / "reports/triplets/metrics.json").read_text())
    assert runs.set_index("tags.flowrl.stage").loc["triplets", "metrics.n_train"] == metrics["n_train"]


def test_changed_parameter_reruns_only_what_reads_it(workspace):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["profiles"]["tiny"]["triplets"]["n_triplets"] += 20
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _ran(_run([DVC, "repro", "validate"], workspace)) == ["params", "triplets", "validate"]


def test_changing_an_inactive_profile_reruns_nothing(workspace):
    """Only the `params` stage (which rewrites the resolved params, unchanged) reruns; every data stage is kept."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["profiles"]["paper"]["triplets"]["n_triplets"] += 1
    params["profiles"]["cpu"]["prompts"] = {"n_prompts": 123}
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run([DVC, "status", "--with-deps", "validate"], workspace)
    assert re.findall(r"^(\w+):", status, re.M) == ["params"], status
    assert _ran(_run([DVC, "repro", "validate"], workspace)) == ["params"]
    assert "Data and pipelines are up to date" in _run([DVC, "status", "--with-deps", "validate"], workspace)


def test_training_stages_end_to_end(workspace):
    """reward -> sft -> grpo on the tiny profile through `dvc repro` (the training issue's 3-minute
    figure is this test's duration: `pytest --durations`), each writing the metrics the issue names."""
    assert _ran(_run([DVC, "repro", "grpo"], workspace)) == [
        "reward",
        "sft",
        "grpo",
    ]  # sft reads the reward (sft.pairing, prompt codes)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    read = lambda stage: yaml.safe_load((workspace / f"reports/{stage}/metrics.json").read_text())  # noqa: E731
    sft, reward, grpo = read("sft"), read("reward"), read("grpo")
    assert sft["perplexity"] > 1 and 0 <= sft["validity"] <= 1
    assert {"ensemble_spearman", "ensemble_mse", "sigma_scored", "sigma_unscored"} <= reward.keys()
    assert grpo["steps"] == params["profiles"]["tiny"]["grpo"]["max_steps"]
    assert 0 <= grpo["validity"] <= 1 and "reward_mean_final" in grpo
    for stage in ("sft", "reward", "grpo"):
        assert (workspace / "models" / stage).is_dir()
    as_json = lambda out: json.JSONDecoder().raw_decode(out)[0]  # noqa: E731 - stdout's JSON, before DVC's warnings
    shown = as_json(_run([DVC, "metrics", "show", "--json"], workspace))[""]["data"]
    assert shown["reports/grpo/metrics.json"]["data"]["steps"] == grpo["steps"]
    plots = as_json(_run([DVC, "plots", "show", "--json", "--split"], workspace))  # the trainers' own logs as DVC plots
    assert [e for e in plots.get("errors", []) if e["name"].startswith(("sft_", "grpo_"))] == []
    assert {"sft_loss", "grpo_reward", "grpo_kl", "grpo_validity"} <= set(plots["data"])
