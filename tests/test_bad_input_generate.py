"""`flowrl generate` with bad arguments and broken model folders: arguments are refused before anything
loads; a damaged folder fails fast, offline (no connection attempted), with one error line and no library noise."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flowrl.cli import generate as cli_generate
from flowrl.cli.main import app
from tests.tracking import test_pyfunc as tiny

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def params_args(tmp_path_factory) -> list[str]:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profiles"]["tiny"]["register"] = {"max_new_tokens": 12, "max_prompt_chars": 300}
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return ["--params", str(path), "--profile", "tiny"]


@pytest.fixture
def nothing_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(cli_generate, "load_generator", refuse)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["   "], ["prompt 0 is empty"]),
        (["a fox", "--gamma", "-1"], ["gamma must be a finite number >= 0 and <= 100, got -1"]),
        (["a fox", "--gamma", "1e38"], ["gamma must be", "got 1e+38"]),
        (["a fox", "--gamma", "nan"], ["gamma must be", "got nan"]),
        (["a fox", "--gamma", "inf"], ["gamma must be", "got inf"]),
        (["a fox", "--seed", str(2**70)], ["seed must be a whole number from 0 to 4294967295", str(2**70)]),
        (["a fox", "--seed", "-1"], ["seed must be a whole number"]),
        (
            ["a \udcff fox"],
            ["prompt 0 is not valid text (invalid UTF-8", "character 2"],
        ),  # argv bytes 0xff, as Python decodes them
        (["x" * 301], ["301 characters, more than the cap of 300", "register.max_prompt_chars"]),
        (["a fox", "--submit", "ftp://127.0.0.1:8188"], ["ComfyUI url 'ftp://127.0.0.1:8188'", "fix --submit"]),
        (["a fox", "--submit", "http://"], ["names no host", "fix --submit"]),
        (["a fox", "--submit", "127.0.0.1:8188"], ["fix --submit"]),
        (
            ["a fox", "--submit", "http://host:99999"],
            ["port '99999' is not a port number from 1 to 65535", "fix --submit"],
        ),
        (["a fox", "--submit", "http://127.0.0.1:99999"], ["port '99999'"]),
        (["a fox", "--submit", ""], ["is empty", "fix --submit"]),
        (["a fox", "--gamma", "100.0001"], ["<= 100, got 100.0001"]),
        (["a fox", "--submit", "http://host/ x"], ["fix --submit"]),
    ],
)
def test_bad_arguments_are_refused_before_loading(nothing_loads, params_args, args, words):
    result = runner.invoke(app, ["generate", *args, "--model", "models:/x@champion", *params_args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert "scoring.options.url" not in result.stderr


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tiny.build_tiny_policy(tmp_path_factory.mktemp("models"))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve or connect fails the test (the loaders must not even try)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network attempt: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def _remove(rel):
    return lambda root: (root / rel).unlink()


def _truncate(rel):
    def damage(root):
        data = (root / rel).read_bytes()
        (root / rel).write_bytes(data[:100])

    return damage


def _garbage(rel, text="\x00garbage{["):
    return lambda root: (root / rel).write_text(text)


BROKEN = {
    "sft-adapter-missing": (
        _remove("sft/adapter_model.safetensors"),
        ["sft: adapter file(s) missing (adapter_model.safetensors)"],
    ),
    "grpo-adapter-missing": (_remove("grpo/adapter_model.safetensors"), ["grpo: adapter file(s) missing"]),
    "sft-adapter-corrupt": (
        _truncate("sft/adapter_model.safetensors"),
        ["adapter_model.safetensors: not a readable safetensors file"],
    ),
    "grpo-adapter-corrupt": (
        _garbage("grpo/adapter_model.safetensors"),
        ["grpo/adapter_model.safetensors: not a readable safetensors"],
    ),
    "adapter-config-garbage": (_garbage("sft/adapter_config.json"), ["adapter_config.json: not a JSON object"]),
    "policy-json-garbage": (_garbage("sft/policy.json"), ["policy.json: not valid JSON"]),
    "policy-json-wrong-shape": (_garbage("sft/policy.json", '{"seed": 1}'), ["policy.json: not a policy spec"]),
    "tokenizer-garbage": (_garbage("sft/tokenizer.json"), ["the saved tokenizer could not be loaded"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_model_folders_fail_fast_offline(models_dir, tmp_path, no_network, params_args, case):
    damage, words = BROKEN[case]
    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    damage(root)
    start = time.perf_counter()
    result = runner.invoke(app, ["generate", "a red fox", "--model", str(root), *params_args])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr  # no library noise
    for word in words:
        assert word in result.stderr, result.stderr
    assert "retrain" in result.stderr or "restore" in result.stderr
    assert not no_network and elapsed < 60


def test_garbage_mlmodel_is_named(tmp_path, no_network, params_args):
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: [\x00")
    result = runner.invoke(app, ["generate", "a red fox", "--model", str(folder), *params_args])
    assert result.exit_code == 2 and "MLmodel is not a readable MLflow pyfunc description" in result.stderr, (
        result.output
    )
    (folder / "MLmodel").write_text("just a string\n")
    result = runner.invoke(app, ["generate", "a red fox", "--model", str(folder), *params_args])
    assert result.exit_code == 2 and "save or download the model again" in result.stderr
    assert not no_network


def test_hub_offline_sets_and_restores_the_switches(monkeypatch):
    import os

    import huggingface_hub.constants as hub

    from flowrl.policy.loading import hub_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = hub.HF_HUB_OFFLINE
    with hub_offline():
        assert hub.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert hub.HF_HUB_OFFLINE == before and "HF_HUB_OFFLINE" not in os.environ
    with hub_offline(False):
        assert hub.HF_HUB_OFFLINE == before


def test_dir_source_without_weights_fails_offline(tmp_path, no_network):
    from flowrl.params.model import PolicyConfig
    from flowrl.policy.loading import PolicyLoadError, load_base_model

    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "vocab_size": 10,
                "hidden_size": 8,
                "num_attention_heads": 2,
                "num_hidden_layers": 1,
                "intermediate_size": 8,
            }
        )
    )
    with pytest.raises(PolicyLoadError, match="could not be loaded"):
        load_base_model(PolicyConfig(source="dir", model=str(tmp_path)), 10)
    assert not no_network


def test_a_good_generate_prints_the_workflow_and_no_library_noise(models_dir, params_args, monkeypatch):
    from flowrl.policy.decoding import guidance
    from flowrl.policy.decoding.sampling import Completion

    flow = tiny.encode_flow(tiny.GRAPH)
    monkeypatch.setattr(
        guidance,
        "sample_guided",
        lambda model, tok, prompts, cfg, gamma, logits_processor=None: [Completion(p, flow, [], True) for p in prompts],
    )
    result = runner.invoke(
        app, ["generate", "a red fox", "--model", str(models_dir), "--seed", "4294967295", *params_args]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and json.loads(result.stdout)["2"]["inputs"]["text"] == "a red fox"
