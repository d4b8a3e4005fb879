"""`flowrl generate`: a local tiny policy, an MLflow model folder, --submit to a fake ComfyUI server, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flowrl.cli.main import app
from flowrl.comfy.validate import validate_graph
from flowrl.encoding.codec import encode_flow
from flowrl.tracking import pyfunc
from tests.tracking import test_pyfunc as tiny

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def params_file(tmp_path_factory) -> Path:
    """params.yaml with short served flows (12 tokens) in the tiny profile: the CLI tests sample for real."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profiles"]["tiny"]["register"] = {"max_new_tokens": 12}
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def params_args(params_file) -> list[str]:
    return ["--params", str(params_file), "--profile", "tiny"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tiny.build_tiny_policy(tmp_path_factory.mktemp("models"))


@pytest.fixture
def valid_sampler(monkeypatch):
    """Make the guided sampler return one fixed valid flow, so the output path can be checked on a random tiny model."""
    from flowrl.policy.decoding import guidance
    from flowrl.policy.decoding.sampling import Completion

    monkeypatch.setattr(
        guidance,
        "sample_guided",
        lambda model, tok, prompts, cfg, gamma, logits_processor=None: [
            Completion(p, encode_flow(tiny.GRAPH), [], True) for p in prompts
        ],
    )


@pytest.fixture
def comfyui():
    """A fake ComfyUI server on 127.0.0.1: POST /prompt records the body and answers a prompt id."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server API)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "body": body})
            data = json.dumps({"prompt_id": "fake-42", "number": 0, "node_errors": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_prints_a_valid_workflow_and_submits_it(models_dir, valid_sampler, comfyui, params_args):
    url, received = comfyui
    prompt = "Ein Leuchtturm im Sturm, Ölgemälde"
    result = runner.invoke(
        app,
        ["generate", prompt, "--model", str(models_dir), "--gamma", "2", "--seed", "5", "--submit", url, *params_args],
    )
    assert result.exit_code == 0, result.output
    text, _, last = result.stdout.strip().rpartition("\n")
    workflow = json.loads(text)
    assert validate_graph(workflow) == []
    assert prompt in [n["inputs"].get("text") for n in workflow.values()]
    assert last == "prompt_id: fake-42"
    assert received[0]["path"] == "/prompt" and received[0]["body"]["prompt"] == workflow


def test_invalid_flow_from_the_model_is_a_clear_failure(models_dir, params_args):
    result = runner.invoke(app, ["generate", "a red fox", "--model", str(models_dir), "--seed", "1", *params_args])
    assert result.exit_code == 1
    assert "not a usable workflow" in result.stderr and "raw flow" in result.stderr


def test_mlflow_model_folder_works_too(models_dir, valid_sampler, tmp_path, params_args):
    saved = pyfunc.save_policy_model(tmp_path / "policy", models_dir / "sft", models_dir / "grpo", tiny.SETTINGS)
    result = runner.invoke(app, ["generate", "a red fox", "--model", str(saved), *params_args])
    assert result.exit_code == 0, result.output
    assert validate_graph(json.loads(result.stdout)) == []


def test_unreachable_server_is_named(models_dir, valid_sampler, params_args):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = runner.invoke(
        app, ["generate", "a red fox", "--model", str(models_dir), "--submit", f"http://127.0.0.1:{port}", *params_args]
    )
    assert result.exit_code == 2
    assert f"127.0.0.1:{port}" in result.stderr and "cannot connect" in result.stderr


def test_missing_alias_and_bad_model_paths(tmp_path, monkeypatch, params_args):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = runner.invoke(app, ["generate", "a red fox", "--model", "models:/nope@champion", *params_args])
    assert result.exit_code == 2 and "models:/nope@champion" in result.stderr and "dvc repro register" in result.stderr
    result = runner.invoke(app, ["generate", "a red fox", *params_args])  # default: the champion of register.model_name
    assert result.exit_code == 2 and "models:/flowrl-policy@champion" in result.stderr
    result = runner.invoke(app, ["generate", "a red fox", "--model", str(tmp_path / "nothing"), *params_args])
    assert result.exit_code == 2 and "not a models:/ URI" in result.stderr


def test_empty_prompt_is_refused(models_dir, params_args):
    result = runner.invoke(app, ["generate", "   ", "--model", str(models_dir), *params_args])
    assert result.exit_code == 2 and "empty" in result.stderr


def test_no_store_in_this_folder_is_named(tmp_path, monkeypatch, params_args):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["generate", "a red fox", *params_args])
    assert result.exit_code == 2 and "no MLflow store at sqlite:///" in result.stderr
    assert not (tmp_path / "mlflow").exists()


def test_quiet_libraries_turns_off_the_loading_weights_bar(monkeypatch):
    """The champion's from_pretrained draws a "Loading weights" tqdm bar on stderr; inside the block there is none."""
    from transformers.utils import logging as tf_logging

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    from flowrl.cli.generate import quiet_libraries

    assert tf_logging.is_progress_bar_enabled()
    with quiet_libraries():
        assert not tf_logging.is_progress_bar_enabled()
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"  # for a fresh process, where transformers loads later
    assert tf_logging.is_progress_bar_enabled() and "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ


def test_a_long_prompt_is_cut_in_tokens_before_sampling(models_dir, params_args, monkeypatch):
    """A 19,000-character prompt (under the 20,000 cap) reaches the sampler as at most register.max_prompt_tokens tokens."""
    from flowrl.policy.decoding import guidance
    from flowrl.policy.decoding.sampling import Completion

    seen: list[str] = []

    def sample(model, tok, prompts, cfg, gamma, logits_processor=None):
        seen.extend(prompts)
        return [Completion(p, encode_flow(tiny.GRAPH), [], True) for p in prompts]

    monkeypatch.setattr(guidance, "sample_guided", sample)
    result = runner.invoke(
        app,
        ["generate", ("a castle at dawn, dramatic clouds, " * 600)[:19_000], "--model", str(models_dir), *params_args],
    )
    assert result.exit_code == 0, result.output
    assert "prompt truncated from" in result.stderr and "to 256 tokens" in result.stderr
    from flowrl.policy.loading import load_sft_policy

    _, tokenizer = load_sft_policy(models_dir / "sft")
    assert len(tokenizer(seen[0], add_special_tokens=False).input_ids) <= 256


def test_generate_from_the_registered_champion_writes_nothing_into_the_store(
    tmp_path, valid_sampler, params_file, monkeypatch
):
    """MLflow loading a models:/ URI in place wrote registered_model_meta into the store's artifacts; now a copy is loaded."""
    from flowrl.io import write_json, write_jsonl
    from flowrl.params.model import load_params
    from flowrl.pipeline.stages import EvaluateFiles
    from flowrl.tracking import registry

    tiny.build_tiny_policy(tmp_path / "models")
    write_json(tmp_path / "reports/evaluate/summary.json", {"win_rate_grpo_cfg_1.5_vs_comfygen": 0.6})
    # the served method's scored flows: the register stage keeps them with the version (promotion like with like)
    write_jsonl(
        tmp_path / EvaluateFiles.flows,
        [{"method": m, "prompt": f"p{i}", "score": 0.2} for m in ("grpo_cfg_1.5", "sft") for i in range(4)],
    )
    for key in ("MLFLOW_TRACKING_URI", "FLOWRL_ARTIFACT_URI", "FLOWRL_PARENT_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    registry.run(load_params(params_file, profile="tiny"), tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri exported it
    store = tmp_path / "mlflow"
    before = {
        p: (p.stat().st_mtime_ns, p.stat().st_size) for p in store.rglob("*") if p.is_file() and p.name != "mlflow.db"
    }
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["generate", "a red fox", "--params", str(params_file), "--profile", "tiny"])
    assert result.exit_code == 0, result.output
    after = {
        p: (p.stat().st_mtime_ns, p.stat().st_size) for p in store.rglob("*") if p.is_file() and p.name != "mlflow.db"
    }
    assert after == before, sorted(set(after.items()) ^ set(before.items()))

    # the champion's files are read in place from the embedded store, without importing MLflow (2-3 s of the budget)
    from flowrl.tracking.store import local_model_artifacts, tracking_uri

    uri = tracking_uri(tmp_path)
    found = local_model_artifacts("models:/flowrl-policy@champion", uri)
    assert (
        found is not None
        and {"sft", "grpo", "settings"} <= set(found)
        and all(store in p.parents for p in found.values())
    )
    assert local_model_artifacts("models:/flowrl-policy/1", uri) == found
    assert local_model_artifacts("models:/flowrl-policy@nope", uri) is None  # MLflow's path then names what is missing
    assert local_model_artifacts("models:/flowrl-policy@champion", "http://127.0.0.1:5000") is None
    code = (
        "import sys; from pathlib import Path; from flowrl.cli.generate import load_generator, quiet_libraries\n"
        "with quiet_libraries():\n"
        f"    g = load_generator('models:/flowrl-policy@champion', Path({str(params_file)!r}), 'tiny')\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
