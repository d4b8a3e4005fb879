"""Bad workflow and encoded-flow files through `flowrl flow validate/convert/encode/decode`: each class of
issue 15 ends in exit 2 with one `error:` line naming the file, where, and the fix; never a traceback and
never exit 0 with wrong output. Valid but unusual files (a BOM) still work."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowrl.cli.main import app
from flowrl.encoding.codec import encode_flow

runner = CliRunner()


def _node(nid, type_, inputs, outputs, widgets):
    return {
        "id": nid,
        "type": type_,
        "mode": 0,
        "widgets_values": widgets,
        "inputs": [{"name": n, "type": t, "link": lk} for n, t, lk in inputs],
        "outputs": [{"name": t, "type": t, "links": []} for t in outputs],
    }


# a small valid UI workflow (text to image) for the tests to damage
UI = {
    "last_node_id": 7,
    "last_link_id": 9,
    "version": 0.4,
    "nodes": [
        _node(1, "CheckpointLoaderSimple", [], ["MODEL", "CLIP", "VAE"], ["v1-5-pruned-emaonly.safetensors"]),
        _node(2, "CLIPTextEncode", [("clip", "CLIP", 1)], ["CONDITIONING"], ["a red fox in the snow"]),
        _node(3, "CLIPTextEncode", [("clip", "CLIP", 2)], ["CONDITIONING"], ["blurry"]),
        _node(4, "EmptyLatentImage", [], ["LATENT"], [512, 512, 1]),
        _node(
            5,
            "KSampler",
            [
                ("model", "MODEL", 3),
                ("positive", "CONDITIONING", 4),
                ("negative", "CONDITIONING", 5),
                ("latent_image", "LATENT", 6),
            ],
            ["LATENT"],
            [42, "fixed", 20, 7.0, "euler", "normal", 1.0],
        ),
        _node(6, "VAEDecode", [("samples", "LATENT", 7), ("vae", "VAE", 8)], ["IMAGE"], []),
        _node(7, "SaveImage", [("images", "IMAGE", 9)], [], ["ComfyUI"]),
    ],
    "links": [
        [1, 1, 1, 2, 0, "CLIP"],
        [2, 1, 1, 3, 0, "CLIP"],
        [3, 1, 0, 5, 0, "MODEL"],
        [4, 2, 0, 5, 1, "CONDITIONING"],
        [5, 3, 0, 5, 2, "CONDITIONING"],
        [6, 4, 0, 5, 3, "LATENT"],
        [7, 5, 0, 6, 0, "LATENT"],
        [8, 1, 2, 6, 1, "VAE"],
        [9, 6, 0, 7, 0, "IMAGE"],
    ],
}


def _ui(change=None) -> str:
    doc = copy.deepcopy(UI)
    if change:
        change(doc)
    return json.dumps(doc)


def _api() -> dict:
    from flowrl.comfy.ui import ui_to_api

    return ui_to_api(copy.deepcopy(UI))


def _drop_links(doc):
    del doc["links"]


def _duplicate_node(doc):
    doc["nodes"].append(dict(doc["nodes"][3], widgets_values=[768, 768, 1]))


def _missing_origin(doc):
    doc["links"][5][1] = 99


def _missing_link(doc):
    doc["links"].pop(5)


def _bad_slot(doc):
    doc["links"][5][2] = 4


API_TEXT = json.dumps(_api())
FILE_CASES = {
    # name: (file text, words the error must hold)
    "ui-without-links": (_ui(_drop_links), ["node 2 (CLIPTextEncode) input 'clip' uses link 1", "no 'links' list"]),
    "ui-duplicate-ids": (_ui(_duplicate_node), ["both have id 4", "new, unused id"]),
    "ui-link-from-missing-node": (
        _ui(_missing_origin),
        ["node 5 (KSampler) input 'latent_image'", "from node 99", "reconnect"],
    ),
    "ui-link-not-in-table": (
        _ui(_missing_link),
        ["node 5 (KSampler) input 'latent_image' uses link 6", "not in the file's 'links'"],
    ),
    "ui-link-bad-slot": (_ui(_bad_slot), ["from output 4 of node 4", "1 output(s)"]),
    "lone-surrogate": (
        API_TEXT.replace('"a red fox in the snow"', '"a red fox \\ud800"'),
        ["['2']['inputs']['text']", "lone surrogate"],
    ),
    "lone-surrogate-key": (API_TEXT.replace('"text"', '"te\\udfffxt"', 1), ["lone surrogate", "fix the key"]),
    "nan": (API_TEXT.replace('"cfg": 7.0', '"cfg": NaN'), ["NaN is not valid JSON"]),
    "infinity": (API_TEXT.replace('"cfg": 7.0', '"cfg": -Infinity'), ["-Infinity is not valid JSON"]),
    "huge-float": (API_TEXT.replace('"cfg": 7.0', '"cfg": 1e999'), ["['5']['inputs']['cfg'] is inf"]),
    "duplicate-key": (
        API_TEXT.replace('"1": {', '"1": {"class_type": "VAELoader", "inputs": {}}, "1": {', 1),
        ["duplicate key '1'"],
    ),
    "deep-nesting": ('{"1": {"class_type": "X", "inputs": {"v": ' + "[" * 900 + "]" * 900 + "}}}", ["nested"]),
    "deep-near-limit": ("[" * 5000 + "]" * 5000, ["nested too deeply"]),
    "encoded-flow-given": (encode_flow(_api()), ["this is an encoded flow", "flowrl flow decode"]),
    "ui-nodes-a-dict": (
        _ui(lambda d: d.update(nodes={str(n["id"]): n for n in d["nodes"]})),
        ["a UI workflow (it has", "'nodes' is a dict, not a list of nodes"],
    ),
}


@pytest.mark.parametrize("command", ["validate", "convert", "encode"])
@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_workflow_files_fail_with_one_clear_error(tmp_path, command, case):
    text, words = FILE_CASES[case]
    path = tmp_path / f"{case}.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = runner.invoke(app, ["flow", command, str(path)])
    assert result.exit_code == 2, (case, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and result.output.startswith(f"error: {path}: ")
    for word in words:
        assert word in result.output, (case, result.output)


def test_bom_prefixed_workflow_is_read_exactly(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + API_TEXT.encode())
    result = runner.invoke(app, ["flow", "convert", str(path)])
    assert result.exit_code == 0 and json.loads(result.output) == _api()


def test_converted_ui_keeps_every_link():
    assert _api()["5"]["inputs"]["latent_image"] == ["4", 0] and _api()["6"]["inputs"]["vae"] == ["1", 2]


ENCODED = encode_flow(_api())
DECODE_CASES = {
    "tab-separated": (ENCODED.replace(" ", "\t"), ["line 1, column 23", "'\\t'", "exactly one space"]),
    "tab-in-value": (ENCODED.replace("sampler_name=euler", "sampler_name=eu\tler"), ["line 5", "value 'eu\\t'"]),
    "control-char": (ENCODED.replace("euler", "eu\x01ler"), ["U+0001"]),
    "api-json": (API_TEXT, ["this is API-format workflow JSON", "flowrl flow encode"]),
    "ui-json": (_ui(), ["this is UI-format workflow JSON", "flowrl flow encode"]),
    "nan": (ENCODED.replace("cfg=7.0", "cfg=NaN"), ["['5']['inputs']['cfg'] is nan", "finite number"]),
    "infinity": (ENCODED.replace("width=512", "width=Infinity"), ["['4']['inputs']['width'] is inf"]),
    "nan-in-list": (ENCODED.replace("cfg=7.0", "cfg=[1,NaN]"), ["['5']['inputs']['cfg'][1] is nan"]),
    "lone-surrogate": (ENCODED.replace("text=blurry", 'text="\\ud800"'), ["lone surrogate", "['inputs']['text']"]),
    "duplicate-json-key": (ENCODED.replace("cfg=7.0", 'cfg={"a":1,"a":2}'), ["key 'a' appears twice"]),
    "duplicate-input": (ENCODED.replace("cfg=7.0", "cfg=7.0 cfg=8.0"), ["input 'cfg' appears twice"]),
    "deep-near-limit": ("X v=" + "[" * 5000 + "]" * 5000, ["nested too deeply"]),
    "deep": ("X v=" + "[" * 100 + "]" * 100, ["nested deeper than 64 levels"]),
    "empty": ("\n \n", ["empty flow text"]),
    "lone-cr": (ENCODED.replace("\n", "\r", 1), ["carriage return", "line endings"]),
}


@pytest.mark.parametrize("case", sorted(DECODE_CASES))
def test_bad_encoded_files_fail_with_one_clear_error(tmp_path, case):
    text, words = DECODE_CASES[case]
    path = tmp_path / f"{case}.txt"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["flow", "decode", str(path)])
    assert result.exit_code == 2, (case, result.output)
    assert "Traceback" not in result.output and result.output.startswith(f"error: {path}: ")
    for word in words:
        assert word in result.output, (case, result.output)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\xff\xfeX a=1", ["not UTF-8 text (byte 0xff at offset 0)"]),
        (None, ["cannot read"]),
    ],
)
def test_unreadable_encoded_files(tmp_path, data, words):
    path = tmp_path / "flow.txt"
    if data is not None:
        path.write_bytes(data)
    result = runner.invoke(app, ["flow", "decode", str(path)])
    assert result.exit_code == 2 and all(w in result.output for w in words), result.output


def test_bom_prefixed_encoded_file_decodes_exactly(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + ENCODED.encode())
    result = runner.invoke(app, ["flow", "decode", str(path)])
    assert result.exit_code == 0, result.output
    from flowrl.encoding.codec import canonical_form

    assert json.loads(result.output) == canonical_form(_api())


def test_crlf_encoded_file_decodes_exactly(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(ENCODED.replace("\n", "\r\n").encode())
    result = runner.invoke(app, ["flow", "decode", str(path)])
    assert result.exit_code == 0, result.output
    from flowrl.encoding.codec import canonical_form

    assert json.loads(result.output) == canonical_form(_api())


def test_bom_inside_encoded_text_is_named():
    from flowrl.encoding.codec import FlowDecodeError, decode_flow

    with pytest.raises(FlowDecodeError, match="byte-order mark"):
        decode_flow("X a=1\n\ufeffY b=2")


def test_directory_and_missing_files(tmp_path):
    for args in (
        ["flow", "decode", str(tmp_path)],
        ["flow", "encode", str(tmp_path)],
        ["flow", "convert", str(Path(tmp_path, "no.json"))],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "Traceback" not in result.output and str(tmp_path) in result.output
