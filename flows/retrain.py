"""Scheduled retraining: dvc pull -> dvc repro -> dvc push (the `register` stage runs inside repro).

Deployed from prefect.yaml onto a GPU work pool; see docs/orchestration.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prefect import flow, task
from prefect.logging import get_run_logger

from flowrl.errors import FlowRLError


class CommandFailed(FlowRLError):
    """A pipeline command failed; the message names the step and shows the tail of its output."""


def _dvc() -> str:
    return str(Path(sys.executable).with_name("dvc"))


def _run(step: str, args: list[str], root: Path) -> str:
    proc = subprocess.run([_dvc(), *args], cwd=root, capture_output=True, text=True)
    if proc.returncode:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise CommandFailed(f"step '{step}' (dvc {' '.join(args)}) failed with exit {proc.returncode}:\n{tail}")
    get_run_logger().info("%s: done", step)
    return proc.stdout


def _has_remote(root: Path) -> bool:
    return bool(subprocess.run([_dvc(), "remote", "list"], cwd=root, capture_output=True, text=True).stdout.strip())


# Pull and push talk to remote storage, so they retry; repro failing is a real failure.
@task(retries=3, retry_delay_seconds=[10, 60, 300])
def dvc_pull(root: Path) -> str:
    return _run("pull", ["pull", "--allow-missing"], root)


@task
def dvc_repro(root: Path, stages: list[str]) -> str:
    return _run("repro", ["repro", *stages], root)


@task(retries=3, retry_delay_seconds=[10, 60, 300])
def dvc_push(root: Path) -> str:
    return _run("push", ["push"], root)


@flow(name="retrain", flow_run_name="retrain")
def retrain(root: str = ".", stages: list[str] | None = None) -> None:
    """Bring data up to date, rebuild what is stale, publish it. `stages` limits the repro (default: all)."""
    root_path = Path(root).resolve()
    remote = _has_remote(root_path)
    if remote:
        dvc_pull(root_path)
    else:
        get_run_logger().warning("no DVC remote configured: skipping pull and push (see docs/orchestration.md)")
    dvc_repro(root_path, stages or [])
    if remote:
        dvc_push(root_path)
