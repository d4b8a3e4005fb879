"""The three commands a ComfyUI user runs: `flow to-ui`, `flow validate --object-info`, `generate --object-info --format ui`."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flowrl.cli.main import app
from flowrl.comfy.object_info import check_installed, load_object_info
from flowrl.comfy.ui import ui_to_api
from flowrl.data.base_flows import LIBRARY_DIR, load_base_flows
from flowrl.encoding.policy_view import policy_text, strip_graph
from flowrl.encoding.schema import infer_schema
from flowrl.encoding.vocab import flow_tokens
from flowrl.policy.decoding.constrained import SCHEMA_FILE
from tests.comfy.comfy_stub import FIXTURE, comfy_stub
from tests.comfy.isomorphism import same_graph
from tests.tracking import test_pyfunc as tiny

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def params_args(tmp_path_factory) -> list[str]:
    """The tiny profile with room for a flow on the fixture's install (~150 tokens at least)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profiles"]["tiny"]["register"] = {"max_new_tokens": 200}
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return ["--params", str(path), "--profile", "tiny"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A tiny SFT-only models/ folder as the sft stage writes it: the flow tokens in the tokenizer, the schema beside it."""
    schema = infer_schema(
        strip_graph(g) for _, g in load_base_flows()
    )  # the policy view, as the encode stage infers it
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tiny, "TOKENS", flow_tokens(schema))
        models = tiny.build_tiny_policy(tmp_path_factory.mktemp("models"), grpo=False)
    schema.save(models / "sft" / SCHEMA_FILE)
    return models


def test_to_ui_prints_or_writes_an_editor_workflow(tmp_path):
    path = LIBRARY_DIR / "sd15_hires_then_esrgan.json"
    result = runner.invoke(app, ["flow", "to-ui", str(path)])
    assert result.exit_code == 0, result.output
    ui = json.loads(result.stdout)
    assert ui["version"] == 0.4 and ui["nodes"] and ui["links"]
    assert same_graph(ui_to_api(ui), json.loads(path.read_text()))
    result = runner.invoke(app, ["flow", "to-ui", str(path), "-o", str(tmp_path / "ui.json")])
    assert result.exit_code == 0 and json.loads((tmp_path / "ui.json").read_text()) == ui
    (tmp_path / "cyclic.json").write_text(
        json.dumps({"1": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0]}}})
    )
    result = runner.invoke(app, ["flow", "to-ui", str(tmp_path / "cyclic.json")])
    assert result.exit_code == 2 and "cycle" in result.stderr and "Traceback" not in result.output


def test_validate_against_a_users_comfyui_names_what_is_missing():
    path = LIBRARY_DIR / "sdxl_face_detailer.json"
    result = runner.invoke(app, ["flow", "validate", str(path), "--object-info", str(FIXTURE)])
    assert result.exit_code == 1
    out = result.stdout
    assert "missing custom node: node" in out and "'FaceDetailer' is not installed" in out
    assert (
        "missing model file: node 1 (CheckpointLoaderSimple) ckpt_name='realvisxlV40_v40Bakedvae.safetensors' is not installed; "
        "nearest installed: 'realisticVisionV60B1_v60B1VAE.safetensors'"
    ) in out
    with comfy_stub() as (url, _):  # the same report from the server itself
        by_url = runner.invoke(app, ["flow", "validate", str(path), "--object-info", url])
    assert by_url.exit_code == 1 and by_url.stdout.splitlines()[1:] == out.splitlines()[1:]


def test_validate_ok_and_unreachable_server(tmp_path):
    graph = json.loads((LIBRARY_DIR / "sd15_txt2img_basic.json").read_text())
    for node in graph.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = "juggernautXL_v10.safetensors"
    (tmp_path / "ok.json").write_text(json.dumps(graph))
    result = runner.invoke(app, ["flow", "validate", str(tmp_path / "ok.json"), "--object-info", str(FIXTURE)])
    assert result.exit_code == 0 and "all installed on" in result.stdout
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = runner.invoke(
        app, ["flow", "validate", str(tmp_path / "ok.json"), "--object-info", f"http://127.0.0.1:{port}"]
    )
    assert result.exit_code == 2 and f"127.0.0.1:{port}" in result.stderr and "Traceback" not in result.output


def installed_flow(ckpt: str = "juggernautXL_v10.safetensors") -> str:
    """A usable flow in the policy's view naming checkpoint `ckpt` (the random tiny model rarely writes a usable one)."""
    graph = json.loads((LIBRARY_DIR / "sd15_txt2img_basic.json").read_text())
    for node in graph.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = ckpt
    return policy_text(graph)


@pytest.fixture
def fixed_sampler(monkeypatch):
    """The SFT sampler returns `flow[0]` for every prompt and records the logits processors it was given."""
    from flowrl.policy.decoding import sampling
    from flowrl.policy.decoding.sampling import Completion

    seen: list = []
    flow = [installed_flow()]

    def sample(model, tok, prompts, cfg, logits_processor=None):
        seen.append(logits_processor)
        return [Completion(p, flow[0], [], True) for p in prompts]

    monkeypatch.setattr(sampling, "sample_flows", sample)
    return flow, seen


def assert_restricted(processors) -> None:
    """The constraint the sampler got draws checkpoints from the install only and has no upscaler."""
    (constraint,) = processors
    ckpts = constraint.g.classes["CheckpointLoaderSimple"].vocab["ckpt_name"]
    assert sorted(ckpts) == ["juggernautXL_v10.safetensors", "realisticVisionV60B1_v60B1VAE.safetensors"]
    assert "UpscaleModelLoader" not in constraint.g.classes and "FaceDetailer" not in constraint.g.classes


def test_generate_for_a_users_comfyui_as_an_editor_workflow(models_dir, params_args, tmp_path, fixed_sampler):
    flow, seen = fixed_sampler
    with comfy_stub() as (url, _):
        args = [
            "generate",
            "a lighthouse in a storm",
            "--model",
            str(models_dir),
            "--seed",
            "3",
            "--object-info",
            url,
            *params_args,
        ]
        result = runner.invoke(app, [*args, "--format", "ui", "-o", str(tmp_path / "ui.json")])
        assert result.exit_code == 0, result.output
        assert "CheckpointLoaderSimple.ckpt_name:" in result.stderr and "not installed: only" in result.stderr
        assert_restricted(seen[-1])
        graph = ui_to_api(json.loads((tmp_path / "ui.json").read_text()))
        assert check_installed(graph, load_object_info(FIXTURE)) == ([], [])
        assert "a lighthouse in a storm" in [n["inputs"].get("text") for n in graph.values()]
        flow[0] = installed_flow("sd_xl_base_1.0.safetensors")  # a flow the install cannot run is refused, by name
        result = runner.invoke(app, args)
    assert result.exit_code == 1 and "ckpt_name='sd_xl_base_1.0.safetensors' is not installed" in result.stderr


def test_served_model_takes_object_info_as_a_request_parameter(models_dir, tmp_path, fixed_sampler):
    import mlflow
    from mlflow.exceptions import MlflowException

    from flowrl.tracking import pyfunc

    _, seen = fixed_sampler
    settings = pyfunc.ServingSettings(max_new_tokens=200, batch_size=2, seed=3)
    saved = pyfunc.save_policy_model(tmp_path / "policy", models_dir / "sft", None, settings)
    model = mlflow.pyfunc.load_model(str(saved))
    rows = model.predict(["a fox", "a castle"], params={"object_info": FIXTURE.read_text()})
    assert_restricted(seen[-1])
    info = load_object_info(FIXTURE)
    for row in rows:
        assert row["valid"], row["error"]
        assert check_installed(row["workflow"], info) == ([], []) and "not installed: only" in row["notes"]
    model.predict(["a fox"])
    assert "UpscaleModelLoader" in seen[-1][0].g.classes  # without the parameter: the model's own choices
    with pytest.raises(MlflowException, match="object_info: not JSON"):
        model.predict(["a fox"], params={"object_info": "{oops"})


def test_generate_keeps_a_users_cueless_checkpoint_in_one_family(models_dir, params_args, tmp_path, fixed_sampler):
    """Issue 25: house_blend (no family cue) at 1152x896 with add_detail (an SD1.5 LoRA) while detail_tweaker_xl is installed."""
    from tests.comfy.test_families import one_lora_flow, renamed_info

    flow, _ = fixed_sampler
    flow[0] = policy_text(one_lora_flow("house_blend.safetensors"))
    info_file = tmp_path / "object_info.json"
    info_file.write_text(json.dumps(renamed_info().nodes))
    args = [
        "generate",
        "anime girl in a neon city",
        "--model",
        str(models_dir),
        "--seed",
        "3",
        "--object-info",
        str(info_file),
        *params_args,
    ]
    mapped = runner.invoke(
        app, [*args, "--checkpoint-family", "house_blend.safetensors=sdxl", "-o", str(tmp_path / "sdxl.json")]
    )
    assert mapped.exit_code == 0, mapped.output
    graph = json.loads((tmp_path / "sdxl.json").read_text())
    lora = next(n for n in graph.values() if n["class_type"] == "LoraLoader")
    assert lora["inputs"]["lora_name"] == "detail_tweaker_xl.safetensors"
    assert "add_detail.safetensors is SD1.5, not SDXL like house_blend.safetensors" in mapped.stderr
    assumed = runner.invoke(app, [*args, "-o", str(tmp_path / "sd15.json")])
    assert assumed.exit_code == 0, assumed.output
    assert (
        "house_blend.safetensors is SD1.5 (no cue in the name); if it is not, pass --checkpoint-family"
        in assumed.stderr
    )
    latent = next(
        n for n in json.loads((tmp_path / "sd15.json").read_text()).values() if n["class_type"] == "EmptyLatentImage"
    )
    assert latent["inputs"]["width"] * latent["inputs"]["height"] <= 0.8e6
    refused = runner.invoke(app, [*args, "--checkpoint-family", "house_blend=sdxl"])
    assert refused.exit_code == 2 and "did you mean 'house_blend.safetensors'" in refused.stderr
    no_info = runner.invoke(app, ["generate", "a fox", "--checkpoint-family", "a=sdxl", *params_args])
    assert no_info.exit_code == 2 and "pass its --object-info too" in no_info.stderr
