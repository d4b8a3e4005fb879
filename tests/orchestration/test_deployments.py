"""prefect.yaml against a real local Prefect server: deploy everything, check each deployment, run one
(the `pipeline` deployment, data stages only, tiny profile) with a local process worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from flows.local_server import free_port, healthy, stop

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
EXPECTED = {"retrain", "pipeline", "evaluate", "ablations"}

pytestmark = pytest.mark.slow


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


@contextmanager
def prefect_server(home: Path):
    """A real `prefect server start` on a free 127.0.0.1 port with its own PREFECT_HOME; yields the env to use."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_CLI_PROMPT": "false",
    }
    env.pop("PREFECT_PROFILE", None)
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: healthy(env["PREFECT_API_URL"]) or proc.poll() is not None, 180, "prefect server")
        assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
        yield env
    finally:
        stop(proc)
        log.close()


def cli(env: dict, cwd: Path, *args: str, timeout: int = 180) -> str:
    proc = subprocess.run([PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


async def read_deployments(names: set[str]) -> dict:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        found = {}
        for dep in await client.read_deployments():
            if dep.name in names:
                found[dep.name] = dep
        return found


async def read_flow_run(run_id):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_flow_run(run_id)


def in_env(env: dict, coro_fn, *args):
    """Run a client coroutine against the test server (the settings are read from the environment)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        return asyncio.run(coro_fn(*args))


def test_deploy_all_and_run_pipeline_with_process_worker(tmp_path):
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{REPO}", str(clone)], check=True, timeout=120)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())  # the working tree's params (may be ahead of HEAD)
    (clone / "params.yaml").write_text(yaml.safe_dump(raw))
    config = yaml.safe_load((clone / "prefect.yaml").read_text())
    pools = {d["work_pool"]["name"] for d in config["deployments"]}
    home = tmp_path / "prefect-home"
    home.mkdir()

    with prefect_server(home) as env:
        env = {**env, "FLOWRL_REPO_DIR": str(clone), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
        for pool in sorted(pools):
            cli(env, clone, "work-pool", "create", pool, "--type", "process")
        cli(env, clone, "--no-prompt", "deploy", "--all", timeout=300)

        deps = in_env(env, read_deployments, EXPECTED)
        assert set(deps) == EXPECTED
        retrain = deps["retrain"]
        assert [s.schedule.cron for s in retrain.schedules] == ["0 3 * * 1"]
        assert retrain.schedules[0].schedule.timezone == "UTC" and retrain.schedules[0].active
        assert all(not deps[n].schedules for n in EXPECTED - {"retrain"})  # on demand
        assert {d.work_pool_name for d in deps.values()} == {"flowrl-gpu"}
        assert deps["ablations"].parameters == {"profile": None, "root": ".", "variants": None}
        assert deps["evaluate"].parameters == {"profile": None, "root": "."}
        assert set(deps["ablations"].parameter_openapi_schema["properties"]) == {"profile", "root", "variants"}
        assert deps["evaluate"].entrypoint == "flows/evaluate.py:evaluate"

        out = cli(
            env,
            clone,
            "deployment",
            "run",
            "pipeline/pipeline",
            "--params",
            json.dumps({"profile": "tiny", "stages": ["prompts", "flows"]}),
        )
        run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "flowrl-gpu", "--type", "process", "--run-once"],
            env=env,
            cwd=clone,
            stdout=open(tmp_path / "worker.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(lambda: in_env(env, read_flow_run, run_id).state.is_final(), 300, "pipeline flow run")
        finally:
            stop(worker)
        run = in_env(env, read_flow_run, run_id)
        assert run.state.is_completed(), f"{run.state}\n{(tmp_path / 'worker.log').read_text()[-4000:]}"
        assert run.parameters["stages"] == ["prompts", "flows"]
    # the worker ran the flow in the clone, on the tiny profile
    holdout = (clone / "data/prompts/holdout.jsonl").read_text().splitlines()
    assert len(holdout) == raw["profiles"]["tiny"]["prompts"]["n_holdout"]
    assert (clone / "data/flows/base.jsonl").exists() and not (clone / "data/encode").exists()
