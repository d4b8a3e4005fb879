"""The REAL `mlflow models serve -m models:/<name>@champion` on loopback, with the tiny policy:
normal, list, empty, very long, non-ASCII, non-string and malformed requests get valid results or clear 4xx errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flowrl.comfy.validate import validate_graph
from flowrl.io import write_json, write_jsonl
from flowrl.params.model import load_params
from flowrl.pipeline.stages import EvaluateFiles
from flowrl.tracking import registry
from flowrl.tracking.runs import tracking_uri
from tests.tracking import test_pyfunc as tiny

REPO = Path(__file__).resolve().parents[2]
PING_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Register the tiny policy as champion in a temporary SQLite store and serve it; always stopped afterwards."""
    root = tmp_path_factory.mktemp("serve")
    tiny.build_tiny_policy(root / "models")
    write_json(root / "reports/evaluate/summary.json", {"win_rate_grpo_cfg_1.5_vs_comfygen": 0.6})
    write_jsonl(root / EvaluateFiles.flows, [{"method": "grpo_cfg_1.5", "prompt": "a cat", "score": 0.5}])
    params = load_params(REPO / "params.yaml", profile="tiny")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_TRACKING_URI", "FLOWRL_ARTIFACT_URI", "FLOWRL_PARENT_RUN_ID")
    }
    saved = os.environ.copy()
    os.environ.clear()
    os.environ.update(env)
    try:
        registry.run(params, root)
        store = tracking_uri(root)  # read before restoring: mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI
    finally:
        os.environ.clear()
        os.environ.update(saved)
    env["MLFLOW_TRACKING_URI"] = store
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # mlflow execs `uvicorn` from PATH
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(mlflow_bin),
        "models",
        "serve",
        "-m",
        f"models:/{params.register.model_name}@champion",
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
        "-w",
        "1",
    ]
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PING_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"mlflow models serve exited with {proc.returncode}:\n{(root / 'server.log').read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{base}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /ping answer within {PING_TIMEOUT_S} s:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=15)
        log.close()


def invoke(base: str, payload=None, content: bytes | None = None) -> httpx.Response:
    if content is not None:
        return httpx.post(
            f"{base}/invocations", content=content, headers={"Content-Type": "application/json"}, timeout=120
        )
    return httpx.post(f"{base}/invocations", json=payload, timeout=120)


def predictions(resp: httpx.Response) -> list[dict]:
    assert resp.status_code == 200, resp.text
    return resp.json()["predictions"]


def check(row: dict, prompt: str) -> None:
    assert row["prompt"] == prompt
    if row["valid"]:
        assert validate_graph(row["workflow"]) == [] and row["error"] is None
    else:
        assert row["workflow"] is None and row["error"].strip()


def test_prompts_in_every_request_shape(server):
    prompts = ["a red fox in the snow", "日本の城と桜 — ünïcödé ✨"]
    rows = predictions(invoke(server, {"dataframe_records": [{"prompt": p} for p in prompts]}))
    assert len(rows) == 2
    for row, prompt in zip(rows, prompts, strict=True):
        check(row, prompt)
        assert row["method"] == "grpo_cfg_1.5"
    assert (
        predictions(invoke(server, {"dataframe_split": {"columns": ["prompt"], "data": [[p] for p in prompts]}}))
        == rows
    )
    assert predictions(invoke(server, {"inputs": prompts})) == rows
    other = predictions(invoke(server, {"inputs": prompts, "params": {"gamma": 2.0, "seed": 7}}))
    assert [r["method"] for r in other] == ["grpo_cfg_2", "grpo_cfg_2"]


def test_very_long_prompt_is_truncated(server):
    prompt = "a castle on a hill " * 600
    row = predictions(invoke(server, {"inputs": [prompt]}))[0]
    check(row, prompt)
    assert "truncated" in row["notes"]


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"inputs": [""]}, "empty"),
        ({"inputs": ["  \t "]}, "empty"),
        ({"inputs": [42]}, "not a string"),
        ({"inputs": ["a fox", None]}, "prompt 1 is missing"),
        ({"dataframe_records": [{"prompt": 7}]}, "not a string"),
        ({"inputs": ["a fox"], "params": {"gamma": -1.0}}, "gamma"),
        ({"inputs": ["a fox"], "params": {"gamma": 1e38}}, "gamma must be a finite number"),
        ({"inputs": ["a fox"], "params": {"seed": 2**70}}, "seed"),
        ({"inputs": ["a fox"], "params": {"seed": 2**40}}, "seed must be a whole number"),
        ({"inputs": ["a fox"], "params": {"gama": 2.0}}, "unknown params ['gama']"),
        ({"inputs": ["a fox"] * 33}, "more than the cap of 32"),
        ({"inputs": ["x" * 20001]}, "more than the cap of 20000"),
    ],
)
def test_bad_requests_are_400(server, payload, says):
    resp = invoke(server, payload)
    assert resp.status_code == 400, resp.text
    assert says in resp.json()["message"]
    assert "stack_trace" not in resp.json() and "Traceback" not in resp.text


def test_malformed_json_is_400(server):
    resp = invoke(server, content=b'{"inputs": ["a fox"')
    assert 400 <= resp.status_code < 500
    assert resp.json()["error_code"] in ("MALFORMED_REQUEST", "BAD_REQUEST", "INVALID_PARAMETER_VALUE")
