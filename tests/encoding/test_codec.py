"""Codec: exact round trip, canonical-form invariance, value types, malformed text."""

from __future__ import annotations

import copy
import json
import random

import pytest

from flowrl.comfy.ui import ui_to_api
from flowrl.encoding.codec import (
    FlowDecodeError,
    FlowEncodeError,
    canonical_form,
    decode_flow,
    encode_flow,
    split_components,
)
from flowrl.errors import FlowRLError
from tests.encoding.graphs import T2I


def _same(a: dict, b: dict) -> bool:
    """Equal graphs with equal node and input order (dict == ignores order)."""
    return a == b and [(k, list(n["inputs"])) for k, n in a.items()] == [(k, list(n["inputs"])) for k, n in b.items()]


def test_round_trip_every_shared_api_workflow(api_graphs):
    failed = [name for name, g in api_graphs.items() if not _same(decode_flow(encode_flow(g)), canonical_form(g))]
    assert not failed, f"round trip differs for {failed}"
    assert len(api_graphs) >= 100


def test_round_trip_every_shared_ui_workflow(ui_files):
    skipped, failed = [], []
    for path in ui_files:
        try:
            graph = ui_to_api(json.loads(path.read_text()), source=str(path))
        except FlowRLError as exc:
            skipped.append(f"{path.name}: {exc}")
            continue
        if not _same(decode_flow(encode_flow(graph)), canonical_form(graph)):
            failed.append(path.name)
    assert not failed, f"round trip differs for {failed}"
    assert len(skipped) < len(ui_files) / 10, f"too many UI files not convertible: {skipped}"
    print(f"UI workflows skipped (not convertible): {skipped or 'none'}")


def _renumber(graph: dict, rng: random.Random) -> dict:
    """The same graph with fresh random node ids, nodes and inputs in random order."""
    ids = list(graph)
    new = dict(zip(ids, (str(x) for x in rng.sample(range(100, 10_000), len(ids)))))
    out = {}
    for old in rng.sample(ids, len(ids)):
        items = list(graph[old]["inputs"].items())
        rng.shuffle(items)
        out[new[old]] = {
            "class_type": graph[old]["class_type"],
            "inputs": {
                k: [new[str(v[0])], v[1]] if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) else v
                for k, v in items
            },
        }
    return out


@pytest.mark.parametrize("seed", range(3))
def test_canonical_form_ignores_ids_and_order(api_graphs, seed):
    rng = random.Random(seed)
    names = sorted(api_graphs)
    for name in rng.sample(names, 30) + ["ex_2_pass_txt2img_hiresfix_latent_workflow.json"]:
        graph = api_graphs[name]
        assert encode_flow(_renumber(graph, rng)) == encode_flow(graph), name


def test_encoded_text_shape():
    text = encode_flow(T2I)
    lines = text.split("\n")
    assert len(lines) == len(T2I) == len(split_components(text + "\n\n"))
    assert lines[0] == "CheckpointLoaderSimple ckpt_name=sd_xl_base_1.0.safetensors"
    ksampler = next(line for line in lines if line.startswith("KSampler "))
    assert "model=@1" in ksampler and "seed=42 steps=20 cfg=7.0 sampler_name=euler" in ksampler
    assert 'text="blurry, \\"bad\\" hands\\n"' in text and "text=<prompt>" in text
    assert "vae=@1.2" in text  # output index written only when not 0


@pytest.mark.parametrize(
    "value",
    [
        1,
        1.0,
        -0.5,
        1e-05,
        3e20,
        float("inf"),
        True,
        False,
        None,
        0,
        "",
        "a b",
        'say "hi"',
        "line\nbreak",
        "tab\there",
        "ünïcødé 猫",
        "@3",
        "[x]",
        "{y}",
        "42",
        "1.0",
        "true",
        "null",
        "NaN",
        "k=v",
        "a\u2028b",
        "x ",
        [1, "a b", None],
        {"k": [1.5]},
        ["4", 0, 1],
        [1.5, 2],
        ["a", "b"],
    ],
)
def test_values_keep_type_and_text(value):
    graph = {"1": {"class_type": "Node With Space", "inputs": {"v": value, "odd name=": value, "": 1}}}
    back = decode_flow(encode_flow(graph))
    got = back["1"]["inputs"]["v"]
    assert got == value and type(got) is type(value)
    assert back["1"]["inputs"]["odd name="] == value and back["1"]["class_type"] == "Node With Space"


def test_short_strings_stay_unquoted():
    graph = {"1": {"class_type": "X", "inputs": {"a": "euler_ancestral", "b": "v1-5.safetensors", "c": "SDXL/m.ckpt"}}}
    assert encode_flow(graph) == "X a=euler_ancestral b=v1-5.safetensors c=SDXL/m.ckpt"


def test_symmetric_branches_get_one_encoding():
    base = {
        "1": {"class_type": "L", "inputs": {}},
        "2": {"class_type": "A", "inputs": {"x": ["1", 0]}},
        "3": {"class_type": "A", "inputs": {"x": ["1", 0]}},
        "4": {"class_type": "S", "inputs": {"i": ["2", 0], "tag": "first"}},
        "5": {"class_type": "S", "inputs": {"i": ["3", 0], "tag": "second"}},
    }
    swapped = copy.deepcopy(base)
    swapped["4"]["inputs"]["i"], swapped["5"]["inputs"]["i"] = ["3", 0], ["2", 0]
    assert encode_flow(base) == encode_flow(swapped)


@pytest.mark.parametrize(
    "text, lineno, reason",
    [
        ("", 1, "empty"),
        ("A x=1\nB y", 2, "no '=value'"),
        ("A x=1\nB y=@2", 2, "not an earlier line"),
        ("A\nB y=@0", 2, "bad link"),
        ('A x=1\n\nB y="open', 3, "quoted"),
        ("A x= y=2", 1, "missing value"),
        ("A x=1  y=2", 1, "empty input name"),
        ("A x=1 x=2", 1, "twice"),
        ("A x=1 ", 1, "trailing space"),
        (" A", 1, "missing class type"),
        ("A x=[1,2", 1, "invalid quoted value"),
        ('A x="a"y=1', 1, "expected a space"),
    ],
)
def test_malformed_text_names_line(text, lineno, reason):
    with pytest.raises(FlowDecodeError, match=rf"line {lineno}\b.*{reason}"):
        decode_flow(text)


def test_unencodable_graphs_raise():
    with pytest.raises(FlowEncodeError, match="missing node '9'"):
        encode_flow({"1": {"class_type": "A", "inputs": {"x": ["9", 0]}}})
    with pytest.raises(FlowEncodeError, match="cycle"):
        encode_flow(
            {"1": {"class_type": "A", "inputs": {"x": ["2", 0]}}, "2": {"class_type": "B", "inputs": {"y": ["1", 0]}}}
        )


@pytest.mark.parametrize(
    "graph, match",
    [
        ({}, "non-empty API graph"),
        ([], "non-empty API graph"),
        ({"1": {"inputs": {}}}, "node '1': not an object with a string 'class_type'"),
        ({"1": {"class_type": "A", "inputs": [1]}}, "node '1' \\(A\\): 'inputs' must be an object"),
    ],
)
def test_malformed_graphs_raise(graph, match):
    with pytest.raises(FlowEncodeError, match=match):
        encode_flow(graph)


def test_a_lone_surrogate_character_is_refused_with_its_place():
    # found by tests/comfy/test_properties.py: a raw "\ud800" decoded, then could not be encoded as UTF-8
    with pytest.raises(FlowDecodeError, match="line 2, column 16: a lone surrogate"):
        decode_flow("EmptyLatentImage width=512\nKSampler steps=\ud800")
