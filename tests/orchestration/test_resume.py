"""Failure handling: a stage failing after its retries fails its flow naming the stage; a killed
training stage resumes from its last checkpoint and ends at the same optimizer step."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import yaml
from prefect.testing.utilities import prefect_test_harness

from flowrl.io import read_json
from flowrl.params.model import load_params
from flowrl.pipeline import stages

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_transient_failure_is_retried_then_fails_flow_with_stage_and_original_error(
    prefect_server, monkeypatch, tmp_path
):
    import flows.stages
    import tasks.stages
    from flows.stages import StageFailed, make_stage_flow

    calls = []

    def run(params, root):
        calls.append(1)
        raise ConnectionError("scorer at 10.0.0.9 refused")

    module = types.ModuleType("flaky_stage")
    module.run = run
    monkeypatch.setitem(sys.modules, "flaky_stage", module)
    monkeypatch.setitem(stages.STAGES, "flaky", stages.Stage("flaky", "flaky_stage:run", ("profile",), (), ()))
    # same retry count as the real task, without its 5 s / 30 s waits
    fast = tasks.stages.run_stage.with_options(retry_delay_seconds=0)
    monkeypatch.setattr(flows.stages, "run_stage", fast)
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({**yaml.safe_load((REPO / "params.yaml").read_text()), "profile": "tiny"})
    )

    with pytest.raises(StageFailed, match=r"stage 'flaky' failed: ConnectionError: scorer at 10.0.0.9 refused") as info:
        make_stage_flow("flaky")(profile="tiny", root=str(tmp_path))
    assert len(calls) == 1 + tasks.stages.run_stage.retries == 3
    assert isinstance(info.value.__cause__, ConnectionError)


# Runs the sft stage in a child process that SIGKILLs itself right after the first checkpoint is
# saved: no cleanup, no atexit, like a preempted GPU node.
KILL_AFTER_FIRST_SAVE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from transformers import TrainerCallback
    import flowrl.policy.sft as sft
    from flowrl.params.model import load_params

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            print(f"killed at step {state.global_step}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    build = sft.build_trainer
    def build_with_kill(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.add_callback(Kill())
        return trainer
    sft.build_trainer = build_with_kill
    root = Path(sys.argv[1])
    sft.run(load_params(root / "params.yaml"), root)
""")


@pytest.mark.slow
def test_killed_sft_resumes_from_checkpoint_with_same_steps(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profile"] = "tiny"
    # no validity sampling: this test is about the optimizer steps
    raw["profiles"]["tiny"]["sft"].update(n_validity=0, n_eval=4)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "params.yaml")
    for name in ("prompts", "flows", "encode"):
        stages.stage_function(name)(params, tmp_path)

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_SAVE, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert f"killed at step {params.sft.save_steps}" in killed.stdout
    assert not (tmp_path / "models/sft").exists()  # nothing half-written
    checkpoints = list((tmp_path / "models/sft_checkpoints").glob("run-*/checkpoint-*"))
    assert [c.name for c in checkpoints] == [f"checkpoint-{params.sft.save_steps}"]

    metrics = stages.stage_function("sft")(params, tmp_path)
    assert metrics["resumed_from_step"] == params.sft.save_steps
    assert metrics["n_steps"] == params.sft.max_steps
    assert read_json(tmp_path / "reports/sft/metrics.json")["n_steps"] == params.sft.max_steps
    assert (tmp_path / "models/sft/policy.json").exists()
