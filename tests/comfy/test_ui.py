"""UI -> API conversion: the gold pairs in ../shared and one hand-made fixture per README quirk."""

from __future__ import annotations

import json

import pytest

from flowrl.comfy.graph import load_workflow
from flowrl.comfy.ui import UIConversionError, ui_to_api
from tests.comfy.isomorphism import diff, same_graph

# Pairs whose converted UI cannot match the API file, with the reason. Empty: all 102 match.
KNOWN_PAIR_EXCEPTIONS: dict[str, str] = {}


def _pairs(root):
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines() if line.strip()]
    return [(r["file"], r["pair"]) for r in rows if r["format"] == "ui" and "pair" in r]


def test_every_pair_converts_to_its_api_file(shared_workflows):
    pairs = _pairs(shared_workflows)
    assert len(pairs) >= 100
    mismatched = {}
    for ui_file, api_file in pairs:
        converted = load_workflow(shared_workflows / ui_file)
        expected = load_workflow(shared_workflows / api_file)
        if not same_graph(converted, expected) and ui_file not in KNOWN_PAIR_EXCEPTIONS:
            mismatched[ui_file] = diff(converted, expected)
    assert not mismatched, mismatched


def test_isomorphism_detects_a_changed_link_and_value(shared_workflows):
    ui_file, api_file = _pairs(shared_workflows)[0]
    expected = load_workflow(shared_workflows / api_file)
    moved = json.loads(json.dumps(expected))
    sampler = next(n for n in moved.values() if n["class_type"] == "KSampler")
    sampler["inputs"]["positive"], sampler["inputs"]["negative"] = (
        sampler["inputs"]["negative"],
        sampler["inputs"]["positive"],
    )
    assert not same_graph(moved, expected)
    sampler["inputs"]["positive"], sampler["inputs"]["negative"] = (
        sampler["inputs"]["negative"],
        sampler["inputs"]["positive"],
    )
    sampler["inputs"]["steps"] += 1
    assert not same_graph(moved, expected)


def test_group_nodes_expand_with_colon_ids(shared_workflows):
    path = shared_workflows / "ui" / "ex_edit_models_sdxl_edit_model.json"
    graph = load_workflow(path)
    inner = [nid for nid in graph if ":" in nid]
    assert inner and all(graph[nid]["class_type"] != "Reroute" for nid in inner)


# ---- hand-made fixtures, one per README quirk -------------------------------------------------------------


def node(nid, type_, widgets=None, inputs=(), outputs=(), mode=0):
    return {
        "id": nid,
        "type": type_,
        "mode": mode,
        "widgets_values": widgets,
        "inputs": [dict(i) for i in inputs],
        "outputs": [{"name": t, "type": t, "links": []} for t in outputs],
    }


def link_in(name, type_, link, widget=False):
    entry = {"name": name, "type": type_, "link": link}
    if widget:
        entry["widget"] = {"name": name}
    return entry


CKPT = node(1, "CheckpointLoaderSimple", ["m.safetensors"], outputs=("MODEL", "CLIP", "VAE"))
LATENT = node(5, "EmptyLatentImage", [512, 512, 1], outputs=("LATENT",))
POS = node(6, "CLIPTextEncode", ["a cat"], [link_in("clip", "CLIP", 2)], ("CONDITIONING",))


def sampler(widgets, extra_inputs=(), mode=0):
    return node(
        3,
        "KSampler",
        widgets,
        [
            link_in("model", "MODEL", 1),
            link_in("positive", "CONDITIONING", 3),
            link_in("negative", "CONDITIONING", 3),
            link_in("latent_image", "LATENT", 4),
            *extra_inputs,
        ],
        ("LATENT",),
        mode,
    )


BASE_LINKS = [
    [1, 1, 0, 3, 0, "MODEL"],
    [2, 1, 1, 6, 0, "CLIP"],
    [3, 6, 0, 3, 1, "CONDITIONING"],
    [4, 5, 0, 3, 3, "LATENT"],
]


def ui(nodes, links=()):
    return {"nodes": nodes, "links": [*BASE_LINKS, *links], "groups": [{"title": "g", "bounding": [0, 0, 1, 1]}]}


@pytest.mark.parametrize("control", ["randomize", "fixed", True])
def test_control_after_generate_is_skipped(control):
    graph = ui_to_api(ui([CKPT, LATENT, POS, sampler([42, control, 20, 7.5, "euler", "normal", 1.0])]))
    assert graph["3"]["inputs"] == {
        "seed": 42,
        "steps": 20,
        "cfg": 7.5,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 1.0,
        "model": ["1", 0],
        "positive": ["6", 0],
        "negative": ["6", 0],
        "latent_image": ["5", 0],
    }


def test_loadimage_upload_widget_dropped():
    graph = ui_to_api(
        {
            "nodes": [
                node(1, "LoadImage", ["cat.png", "image"], outputs=("IMAGE", "MASK")),
                node(2, "PreviewImage", [], [link_in("images", "IMAGE", 1)]),
            ],
            "links": [[1, 1, 0, 2, 0, "IMAGE"]],
        }
    )
    assert graph["1"]["inputs"] == {"image": "cat.png"}


@pytest.mark.parametrize("trailing", [[""], [None], []])
def test_trailing_preview_value_ignored(trailing):
    graph = ui_to_api(
        {
            "nodes": [
                LATENT,
                node(8, "VAEDecode", None, [link_in("samples", "LATENT", 9)], ("IMAGE",)),
                node(9, "SaveImage", ["out", *trailing], [link_in("images", "IMAGE", 10)]),
            ],
            "links": [[9, 5, 0, 8, 0, "LATENT"], [10, 8, 0, 9, 0, "IMAGE"]],
        }
    )
    assert graph["9"]["inputs"] == {"filename_prefix": "out", "images": ["8", 0]}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["clip_l.safetensors", "sd3"], {"clip_name": "clip_l.safetensors", "type": "sd3"}),
        (
            ["clip_l.safetensors", "sd3", "default"],
            {"clip_name": "clip_l.safetensors", "type": "sd3", "device": "default"},
        ),
    ],
)
def test_version_drift_variants(values, expected):
    graph = ui_to_api({"nodes": [node(1, "CLIPLoader", values, outputs=("CLIP",))], "links": []})
    assert graph["1"]["inputs"] == expected


def test_widget_converted_to_input_fed_by_primitive():
    prim = node(7, "PrimitiveNode", [99, "fixed"], outputs=("INT",))
    ks = sampler([1, "randomize", 20, 7.0, "euler", "normal", 1.0], [link_in("seed", "INT", 11, widget=True)])
    graph = ui_to_api(ui([CKPT, LATENT, POS, prim, ks], [[11, 7, 0, 3, 4, "INT"]]))
    assert "7" not in graph
    assert graph["3"]["inputs"]["seed"] == 99 and graph["3"]["inputs"]["steps"] == 20


def test_widget_converted_to_input_fed_by_node_is_a_link():
    src = node(7, "CLIPTextEncode", ["x"], [link_in("clip", "CLIP", 2)], ("CONDITIONING",))
    ks = sampler([1, "randomize", 20, 7.0, "euler", "normal", 1.0], [link_in("seed", "INT", 11, widget=True)])
    graph = ui_to_api(ui([CKPT, LATENT, POS, src, ks], [[11, 7, 0, 3, 4, "INT"]]))
    assert graph["3"]["inputs"]["seed"] == ["7", 0]


def test_reroute_is_pass_through_and_notes_dropped():
    reroute = node(20, "Reroute", None, [link_in("", "*", 1)], ("*",))
    ks = sampler([1, "fixed", 20, 7.0, "euler", "normal", 1.0])
    ks["inputs"][0]["link"] = 21
    notes = [node(30, "Note", ["hello"]), node(31, "MarkdownNote", ["# hi"])]
    graph = ui_to_api(ui([CKPT, LATENT, POS, reroute, ks, *notes], [[21, 20, 0, 3, 0, "MODEL"]]))
    assert graph["3"]["inputs"]["model"] == ["1", 0]
    assert set(graph) == {"1", "5", "6", "3"}


def test_a_reroute_loop_is_named_not_a_missing_input():
    loop = [
        node(20, "Reroute", None, [link_in("", "*", 22)], ("*",)),
        node(21, "Reroute", None, [link_in("", "*", 23)], ("*",)),
    ]
    ks = sampler([1, "fixed", 20, 7.0, "euler", "normal", 1.0])
    ks["inputs"][0]["link"] = 21
    links = [[21, 20, 0, 3, 0, "MODEL"], [22, 21, 0, 20, 0, "*"], [23, 20, 0, 21, 0, "*"]]
    with pytest.raises(
        UIConversionError,
        match=r"node 3 \(KSampler\) input 'model' is fed by a loop of Reroute/bypassed "
        r"nodes: 20 \(Reroute\) -> 21 \(Reroute\) -> 20 \(Reroute\)",
    ):
        ui_to_api(ui([CKPT, LATENT, POS, *loop, ks], links))


def test_muted_node_dropped_and_its_consumers_lose_the_input():
    lora = node(
        10,
        "LoraLoader",
        ["l.safetensors", 1.0, 1.0],
        [link_in("model", "MODEL", 1), link_in("clip", "CLIP", 2)],
        ("MODEL", "CLIP"),
        mode=2,
    )
    ks = sampler([1, "fixed", 20, 7.0, "euler", "normal", 1.0])
    ks["inputs"][0]["link"] = 21
    graph = ui_to_api(ui([CKPT, LATENT, POS, lora, ks], [[21, 10, 0, 3, 0, "MODEL"]]))
    assert "10" not in graph and "model" not in graph["3"]["inputs"]


def test_bypassed_node_rewires_by_type():
    lora = node(
        10,
        "LoraLoader",
        ["l.safetensors", 1.0, 1.0],
        [link_in("model", "MODEL", 1), link_in("clip", "CLIP", 2)],
        ("MODEL", "CLIP"),
        mode=4,
    )
    clip_user = node(6, "CLIPTextEncode", ["a cat"], [link_in("clip", "CLIP", 22)], ("CONDITIONING",))
    ks = sampler([1, "fixed", 20, 7.0, "euler", "normal", 1.0])
    ks["inputs"][0]["link"] = 21
    graph = ui_to_api(ui([CKPT, LATENT, clip_user, lora, ks], [[21, 10, 0, 3, 0, "MODEL"], [22, 10, 1, 6, 0, "CLIP"]]))
    assert "10" not in graph
    assert graph["3"]["inputs"]["model"] == ["1", 0] and graph["6"]["inputs"]["clip"] == ["1", 1]


def test_legacy_group_node_expanded():
    group = {
        "nodes": [
            {
                "index": 0,
                "type": "CLIPTextEncode",
                "inputs": [{"name": "clip", "type": "CLIP", "link": None}],
                "outputs": [{"name": "c", "type": "CONDITIONING", "links": []}],
                "widgets_values": ["inner text"],
            },
            {
                "index": 1,
                "type": "ConditioningCombine",
                "inputs": [
                    {"name": "conditioning_1", "type": "CONDITIONING", "link": None},
                    {"name": "conditioning_2", "type": "CONDITIONING", "link": None},
                ],
                "outputs": [{"name": "c", "type": "CONDITIONING", "links": []}],
                "widgets_values": [],
            },
        ],
        "links": [[None, 1, 0, 0, 1, "CLIP"], [0, 0, 1, 0, 9, "CONDITIONING"], [None, 0, 1, 1, 6, "CONDITIONING"]],
        "external": [],
    }
    gnode = node(
        40,
        "workflow>Pair",
        ["inner text"],
        [link_in("clip", "CLIP", 30), link_in("cond", "CONDITIONING", 31)],
        ("CONDITIONING",),
    )
    ks = sampler([1, "fixed", 20, 7.0, "euler", "normal", 1.0])
    ks["inputs"][1]["link"] = 32
    doc = ui(
        [CKPT, LATENT, POS, gnode, ks],
        [[30, 1, 1, 40, 0, "CLIP"], [31, 6, 0, 40, 1, "CONDITIONING"], [32, 40, 0, 3, 1, "CONDITIONING"]],
    )
    doc["extra"] = {"groupNodes": {"Pair": group}}
    graph = ui_to_api(doc)
    assert graph["40:0"] == {"class_type": "CLIPTextEncode", "inputs": {"text": "inner text", "clip": ["1", 1]}}
    assert graph["40:1"]["inputs"] == {"conditioning_1": ["40:0", 0], "conditioning_2": ["6", 0]}
    assert graph["3"]["inputs"]["positive"] == ["40:1", 0]
    del doc["extra"]
    with pytest.raises(UIConversionError, match="workflow>Pair"):
        ui_to_api(doc)


def test_unknown_class_without_widget_names_is_a_clear_error():
    with pytest.raises(UIConversionError, match="node 1 has unknown class type 'MyCustomNode'"):
        ui_to_api({"nodes": [node(1, "MyCustomNode", [1, 2])], "links": []})
    named = node(1, "MyCustomNode", [1, 2], [link_in("a", "INT", None, True), link_in("b", "INT", None, True)])
    assert ui_to_api({"nodes": [named], "links": []})["1"]["inputs"] == {"a": 1, "b": 2}


def test_malformed_ui_errors():
    with pytest.raises(UIConversionError, match="link"):
        ui_to_api({"nodes": [CKPT], "links": [[1]]})
    with pytest.raises(UIConversionError, match="'nodes.0.id': Field required"):
        ui_to_api({"nodes": [{"type": 3}], "links": []})
    with pytest.raises(UIConversionError, match="'nodes.0.mode'"):
        ui_to_api({"nodes": [dict(CKPT, mode="x")], "links": []})
    with pytest.raises(UIConversionError, match="'links' must be a list"):
        ui_to_api({"nodes": [CKPT], "links": 5})
    with pytest.raises(UIConversionError, match="subgraphs"):
        ui_to_api({"nodes": [CKPT], "links": [], "definitions": {"subgraphs": [{"id": "x"}]}})


def test_5000_reroute_chain_and_5000_nodes_convert():
    """A deep Reroute chain resolves without recursion limits (its speed is a benchmark's business, not a unit test's)."""
    nodes = [CKPT, LATENT, POS]
    links = []
    for i in range(5000):
        nodes.append(node(100 + i, "Reroute", None, [link_in("", "*", 1 if i == 0 else 10_000 + i)], ("*",)))
        links.append([10_001 + i, 100 + i, 0, 101 + i, 0, "*"])
    for i in range(5000):
        nodes.append(node(20_000 + i, "CLIPTextEncode", [f"t{i}"], [link_in("clip", "CLIP", 2)], ("CONDITIONING",)))
    ks = sampler([1, "fixed", 20, 7.0, "euler", "normal", 1.0])
    ks["inputs"][0]["link"] = 15_000
    links.append([15_000, 5099, 0, 3, 0, "MODEL"])
    graph = ui_to_api(ui([*nodes, ks], links))
    assert graph["3"]["inputs"]["model"] == ["1", 0] and len(graph) == 5004
