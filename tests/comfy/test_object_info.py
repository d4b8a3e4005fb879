"""A user's ComfyUI from /object_info: reading it (file, URL), missing nodes and files, server-side validation, schema restriction."""

from __future__ import annotations

import json
import socket

import pytest

from flowrl.comfy.client import ComfyUIClient, ComfyUIError
from flowrl.comfy.object_info import (ObjectInfoError, check_installed, find_missing, load_object_info, nearest,
                                      object_info_from_text, restrict_schema)
from flowrl.comfy.validate import validate_graph
from flowrl.comfy import components
from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.schema import infer_schema
from tests.comfy.comfy_stub import FIXTURE, comfy_stub

INSTALLED_CKPTS = ["juggernautXL_v10.safetensors", "realisticVisionV60B1_v60B1VAE.safetensors"]


@pytest.fixture(scope="module")
def info():
    return load_object_info(FIXTURE)


@pytest.fixture(scope="module")
def base_flows():
    return dict(load_base_flows())


def runnable_graph(base_flows) -> dict:
    """sd15_txt2img_basic with its checkpoint swapped for an installed one."""
    graph = json.loads(json.dumps(base_flows["sd15_txt2img_basic"]))
    for node in graph.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = INSTALLED_CKPTS[1]
    return graph


def test_fixture_is_a_user_without_the_catalogs_checkpoints(info):
    assert info.choices("CheckpointLoaderSimple", "ckpt_name") == INSTALLED_CKPTS
    assert not set(INSTALLED_CKPTS) & {c.name for c in components.CHECKPOINTS}
    assert info.choices("UpscaleModelLoader", "model_name") == []
    assert "KSampler" in info.classes and "FaceDetailer" not in info.classes  # core only, no custom node packs
    assert "euler" in info.choices("KSampler", "sampler_name")


def test_url_and_file_give_the_same_definitions(info):
    with comfy_stub() as (url, _):
        assert load_object_info(url).nodes == info.nodes
        assert load_object_info(url + "/object_info").nodes == info.nodes


def test_unreadable_sources_say_what_to_do(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ObjectInfoError, match=f"127.0.0.1:{port}/object_info.*start ComfyUI"):
        load_object_info(f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(ObjectInfoError, match="cannot read"):
        load_object_info(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ObjectInfoError, match="bad.json: not JSON"):
        load_object_info(tmp_path / "bad.json")
    (tmp_path / "queue.json").write_text(json.dumps({"queue_running": [], "queue_pending": []}))
    with pytest.raises(ObjectInfoError, match="no node definitions"):
        load_object_info(tmp_path / "queue.json")
    with pytest.raises(ObjectInfoError, match="request parameter object_info: not JSON"):
        object_info_from_text("http://x")


def test_newer_combo_form_is_read():
    info = object_info_from_text(json.dumps({"CheckpointLoaderSimple": {
        "input": {"required": {"ckpt_name": ["COMBO", {"options": ["a.safetensors"]}]}}, "output": ["MODEL", "CLIP", "VAE"]}}))
    assert info.choices("CheckpointLoaderSimple", "ckpt_name") == ["a.safetensors"]
    assert info.catalog.get("CheckpointLoaderSimple").inputs["ckpt_name"].choices == ["a.safetensors"]


def test_missing_custom_nodes_and_model_files_with_nearest_alternative(info, base_flows):
    missing = find_missing(base_flows["sdxl_face_detailer"], info)
    nodes = {m.class_type for m in missing if m.input is None}
    assert nodes == {"FaceDetailer", "UltralyticsDetectorProvider", "SAMLoader"}
    files = {(m.input, m.value): m.alternative for m in missing if m.input is not None}
    ckpt = next(v for (name, v) in files if name == "ckpt_name")
    assert files[("ckpt_name", ckpt)] in INSTALLED_CKPTS
    text = "\n".join(map(str, missing))
    assert "missing custom node: node" in text and "'FaceDetailer' is not installed" in text
    assert "missing model file: node" in text and f"ckpt_name={ckpt!r} is not installed; nearest installed:" in text
    assert nearest("juggernautXL_v9Rundiffusionphoto2.safetensors", INSTALLED_CKPTS) == "juggernautXL_v10.safetensors"
    assert nearest("x", []) is None
    assert nearest("FreeU_V3", ["FreeU_V2", "KSampler"], cutoff=85) == "FreeU_V2"
    assert next(m for m in missing if m.class_type == "FaceDetailer").alternative is None  # no look-alike class


def test_server_validation_matches_the_stub_and_the_catalog(info, base_flows):
    graph = runnable_graph(base_flows)
    assert check_installed(graph, info) == ([], []) and validate_graph(graph) == []
    broken = json.loads(json.dumps(graph))
    sampler = next(n for n in broken.values() if n["class_type"] == "KSampler")
    sampler["inputs"]["steps"] = 100000
    missing, problems = check_installed(broken, info)
    assert not missing and [p.input for p in problems] == ["steps"]
    with comfy_stub() as (url, server):
        client = ComfyUIClient(url, timeout=5, retries=0)
        assert client.submit(graph)
        with pytest.raises(ComfyUIError, match="refused \\(400\\).*value_not_in_list.*ckpt_name"):
            client.submit(base_flows["sd15_txt2img_basic"])
        with pytest.raises(ComfyUIError, match="refused \\(400\\).*steps"):
            client.submit(broken)
        client.close()
        assert server.prompts == [graph]


def test_restricted_schema_keeps_only_installed_classes_and_files(info, base_flows):
    schema = infer_schema(base_flows.values())
    restricted, notes = restrict_schema(schema, info)
    assert set(restricted.classes) < set(schema.classes) and set(restricted.classes) <= info.classes
    assert list(restricted.classes["CheckpointLoaderSimple"].fields["ckpt_name"].vocab) == sorted(INSTALLED_CKPTS)
    assert list(restricted.classes["LoraLoader"].fields["lora_name"].vocab)[0] == "add_detail.safetensors"  # the model's own first
    assert "UpscaleModelLoader" not in restricted.classes and "ImageUpscaleWithModel" not in restricted.classes
    assert schema.classes["CheckpointLoaderSimple"].fields["ckpt_name"].vocab != restricted.classes["CheckpointLoaderSimple"].fields["ckpt_name"].vocab
    text = "\n".join(notes)
    assert "CheckpointLoaderSimple.ckpt_name: dreamshaper_8.safetensors" in text and "only juggernautXL_v10.safetensors" in text
    assert "UpscaleModelLoader left out: no model_name installed" in text
    assert "ImageUpscaleWithModel left out: needs UPSCALE_MODEL" in text
    assert "FaceDetailer is not installed" in text


def test_no_checkpoint_at_all_is_a_clear_error(info, base_flows):
    raw = json.loads(json.dumps(info.nodes))
    raw["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"] = [[], {}]
    with pytest.raises(ObjectInfoError, match="install a checkpoint"):
        restrict_schema(infer_schema(base_flows.values()), object_info_from_text(json.dumps(raw)))
