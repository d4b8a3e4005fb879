"""A user's ComfyUI from /object_info: reading it (file, URL), missing nodes and files, server-side validation, schema restriction."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flowrl.comfy import components
from flowrl.comfy.client import ComfyUIClient, ComfyUIError
from flowrl.comfy.object_info import (
    ObjectInfo,
    ObjectInfoError,
    check_installed,
    find_missing,
    load_object_info,
    nearest,
    object_info_from_text,
)
from flowrl.comfy.validate import validate_graph
from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.installed import restrict_schema
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
    with pytest.raises(ObjectInfoError, match=r"\['queue_running'\] is a list, not a node definition"):
        load_object_info(tmp_path / "queue.json")
    with pytest.raises(ObjectInfoError, match="request parameter object_info: not JSON"):
        object_info_from_text("http://x")


def test_newer_combo_form_is_read():
    info = object_info_from_text(
        json.dumps(
            {
                "CheckpointLoaderSimple": {
                    "input": {"required": {"ckpt_name": ["COMBO", {"options": ["a.safetensors"]}]}},
                    "output": ["MODEL", "CLIP", "VAE"],
                }
            }
        )
    )
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
    assert (
        list(restricted.classes["LoraLoader"].fields["lora_name"].vocab)[0] == "add_detail.safetensors"
    )  # the model's own first
    assert "UpscaleModelLoader" not in restricted.classes and "ImageUpscaleWithModel" not in restricted.classes
    assert (
        schema.classes["CheckpointLoaderSimple"].fields["ckpt_name"].vocab
        != restricted.classes["CheckpointLoaderSimple"].fields["ckpt_name"].vocab
    )
    text = "\n".join(notes)
    assert (
        "CheckpointLoaderSimple.ckpt_name: dreamshaper_8.safetensors" in text
        and "only juggernautXL_v10.safetensors" in text
    )
    assert "UpscaleModelLoader left out: no model_name installed" in text
    assert "ImageUpscaleWithModel left out: needs UPSCALE_MODEL" in text
    assert "FaceDetailer is not installed" in text


def test_no_checkpoint_at_all_is_a_clear_error(info, base_flows):
    raw = json.loads(json.dumps(info.nodes))
    raw["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"] = [[], {}]
    with pytest.raises(ObjectInfoError, match="install a checkpoint"):
        restrict_schema(infer_schema(base_flows.values()), object_info_from_text(json.dumps(raw)))


KSAMPLER = {"input": {"required": {"model": ["MODEL"]}}, "output": ["LATENT"]}


@pytest.mark.parametrize(
    ("dump", "words"),
    [
        ([KSAMPLER], ["got a JSON list"]),
        ({}, ["got an empty object"]),
        ({"KSampler": [KSAMPLER]}, ["['KSampler'] is a list, not a node definition"]),
        ({"KSampler": {"input": None, "output": ["LATENT"]}}, ["['KSampler']['input'] is a null"]),
        ({"KSampler": {"output": ["LATENT"]}}, ["['KSampler']['input'] is missing"]),
        (
            {"KSampler": {"input": {"required": [["MODEL"]]}, "output": []}},
            ["['KSampler']['input']['required'] is a list"],
        ),
        (
            {"KSampler": {"input": {"required": {"model": "MODEL"}}, "output": []}},
            ["['KSampler']['input']['required']['model'] is \"MODEL\""],
        ),
        (
            {"KSampler": {"input": {"required": {}}, "output": "LATENT"}},
            ["['KSampler']['output'] is \"LATENT\", not a list"],
        ),
        (
            {"system": {"os": "posix", "comfyui_version": "0.3"}, "devices": []},
            ["/system_stats answer, not /object_info"],
        ),
    ],
)
def test_a_dump_of_the_wrong_shape_names_the_field(tmp_path, dump, words):
    path = tmp_path / "info.json"
    path.write_text(json.dumps(dump))
    with pytest.raises(ObjectInfoError) as err:
        load_object_info(path)
    for word in words:
        assert word in str(err.value)
    assert str(path) in str(err.value) and "object_info" in str(err.value).split(str(path), 1)[1]


@pytest.mark.parametrize(
    ("arg", "words"),
    [
        ("", ["--object-info is empty"]),
        ("   ", ["--object-info is empty"]),
        ("http://", ["names no host", "fix --object-info"]),
        ("http:/127.0.0.1:8188", ["names no host"]),
        ("htp://127.0.0.1:8188", ["must start with http://", "fix --object-info"]),
        ("http://127.0.0.1:99999", ["port '99999'"]),
        ("ftp://127.0.0.1/object_info", ["must start with http://"]),
    ],
)
def test_empty_and_mistyped_urls_are_named(arg, words):
    with pytest.raises(ObjectInfoError) as err:
        load_object_info(arg)
    for word in words:
        assert word in str(err.value)


def test_bom_html_and_a_text_parameter(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + FIXTURE.read_bytes())
    assert "KSampler" in load_object_info(path).classes
    (tmp_path / "page.html").write_text("<!DOCTYPE html><html><body>Login</body></html>")
    with pytest.raises(ObjectInfoError, match="an HTML .*page, not JSON"):
        load_object_info(tmp_path / "page.html")
    with pytest.raises(ObjectInfoError, match="request parameter object_info: not JSON"):
        object_info_from_text("http://x")
    with pytest.raises(ObjectInfoError, match=r"\['KSampler'\]\['input'\] is a null"):
        object_info_from_text(json.dumps({"KSampler": {"input": None}}))


@contextmanager
def http_server(handler_get):
    """A loopback HTTP server whose GET runs handler_get(handler); yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            handler_get(self)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_named_not_followed():
    def redirect(h):
        h.send_response(302)
        h.send_header("Location", "http://login.example/")
        h.send_header("Content-Length", "0")
        h.end_headers()

    with (
        http_server(redirect) as url,
        pytest.raises(ObjectInfoError, match="302, a redirect to 'http://login.example/'"),
    ):
        load_object_info(url)


def test_a_trickling_server_is_cut_off_at_the_total_deadline():
    def trickle(h):
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        for _ in range(40):  # one byte every 0.1 s: no single read ever times out
            try:
                h.wfile.write(b" ")
                h.wfile.flush()
            except OSError:
                return
            time.sleep(0.1)

    with http_server(trickle) as url:
        start = time.monotonic()
        with pytest.raises(ObjectInfoError, match="no complete answer within 1 s"):
            load_object_info(url, timeout=1.0)
        assert time.monotonic() - start < 2.5


def test_a_missing_core_node_is_not_called_a_custom_node(info, base_flows):
    graph = runnable_graph(base_flows)
    graph["90"] = {"class_type": "FreeU_V2", "inputs": {}}  # core ComfyUI, absent from an old install
    graph["91"] = {"class_type": "FaceDetailer", "inputs": {}}
    graph["92"] = {"class_type": "MyOwnNode", "inputs": {}}
    old = ObjectInfo({ct: d for ct, d in info.nodes.items() if ct != "FreeU_V2"}, "old")
    texts = {m.node_id: str(m) for m in find_missing(graph, old) if m.input is None}
    assert (
        texts["90"].startswith("missing core node") and "update ComfyUI" in texts["90"] and "custom" not in texts["90"]
    )
    assert texts["91"].startswith("missing custom node") and "ComfyUI-Impact-Pack" in texts["91"]
    assert texts["92"].startswith("unknown node class")
