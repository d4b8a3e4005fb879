"""The flows stage: importing real workflow files, rejection reasons, end to end into tmp_path."""

import json

import pytest

from flowrl.comfy.graph import PROMPT_PLACEHOLDER
from flowrl.comfy.validate import validate_graph
from flowrl.data.base_flows import load_base_flows
from flowrl.data.flows import ImportRejected, as_base_flow, import_base_flows, run
from flowrl.errors import FlowRLError
from flowrl.io import read_jsonl
from flowrl.params.model import Params

LIBRARY = dict(load_base_flows())


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def _with_real_prompt(graph):
    return json.loads(json.dumps(graph).replace(PROMPT_PLACEHOLDER, "a red fox in the snow"))


def test_imported_graph_gets_the_placeholder():
    flow = as_base_flow(_with_real_prompt(LIBRARY["sd15_one_lora"]), "x.json")
    assert flow == LIBRARY["sd15_one_lora"]


def test_invalid_graph_is_rejected_with_the_problem():
    graph = _with_real_prompt(LIBRARY["sd15_txt2img_basic"])
    sampler = next(k for k, n in graph.items() if n["class_type"] == "KSampler")
    del graph[sampler]["inputs"]["steps"]
    with pytest.raises(ImportRejected, match=f"(?s)bad.json.*node {sampler}.*steps.*missing required"):
        as_base_flow(graph, "bad.json")


def test_image_to_image_is_rejected():
    graph = _with_real_prompt(LIBRARY["sd15_txt2img_basic"])
    graph["99"] = {"class_type": "LoadImage", "inputs": {"image": "in.png"}}
    with pytest.raises(ImportRejected, match="not text-to-image .uses LoadImage"):
        as_base_flow(graph, "i2i.json")


def test_import_dir_reports_every_rejection(tmp_path):
    _write(tmp_path / "good.json", _with_real_prompt(LIBRARY["sd15_hires_latent"]))
    _write(
        tmp_path / "sd2.json",
        json.loads(
            json.dumps(LIBRARY["sd15_txt2img_basic"]).replace(
                "v1-5-pruned-emaonly.safetensors", "v2-1_768-ema-pruned.ckpt"
            )
        ),
    )
    (tmp_path / "broken.json").write_text("{not json")
    accepted, rejected = import_base_flows([tmp_path])
    assert [r["name"] for r in accepted] == [f"{tmp_path.name}_good"]
    reasons = {r["file"].rsplit("/", 1)[1]: r["reason"] for r in rejected}
    assert set(reasons) == {"sd2.json", "broken.json"}
    assert "not valid JSON" in reasons["broken.json"]
    assert "v2-1_768-ema-pruned.ckpt" in reasons["sd2.json"]


def test_import_real_workflows(shared_workflows):
    accepted, rejected = import_base_flows([shared_workflows])
    assert len(accepted) >= 10
    assert len(rejected) >= 100  # most example files are img2img, video, ControlNet, SD2/SD3...
    for row in accepted:
        assert validate_graph(row["graph"]) == [], row["source"]
        assert PROMPT_PLACEHOLDER in json.dumps(row["graph"])
    assert all(r["reason"] for r in rejected)


def test_stage_end_to_end(tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    _write(extra / "mine.json", _with_real_prompt(LIBRARY["sd15_one_lora"]))  # same as a library flow
    graph = _with_real_prompt(LIBRARY["sdxl_txt2img_basic"])
    graph["99"] = {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}}  # 6 = VAEDecode
    _write(extra / "other.json", graph)
    params = Params.model_validate({"seed": 5, "flows": {"variants_per_base": 3, "extra_base_dirs": ["extra"]}})
    metrics = run(params, tmp_path)
    base = read_jsonl(tmp_path / "data/flows/base.jsonl")
    variants = read_jsonl(tmp_path / "data/flows/augmented.jsonl")
    rejected = json.loads((tmp_path / "reports/flows/rejected.json").read_text())
    assert metrics == json.loads((tmp_path / "reports/flows/metrics.json").read_text())
    assert metrics["n_base"] == len(base) == len(LIBRARY) + 1
    assert metrics["n_imported"] == 1 and metrics["n_rejected"] == 1 == len(rejected)
    assert "duplicate of base flow lib-sd15_one_lora" in rejected[0]["reason"]
    assert metrics["n_variants"] == len(variants) == 3 * len(base)
    assert sum(metrics[f"n_base_{f}"] for f in ("sd15", "sdxl", "sdxl_turbo", "sdxl_lightning", "pony")) == len(base)
    assert {tuple(sorted(r)) for r in base} == {("graph", "id", "name", "source")}
    assert {tuple(sorted(r)) for r in variants} == {("base_id", "graph", "id")}
    assert {v["base_id"] for v in variants} == {b["id"] for b in base}
    assert len({r["id"] for r in variants}) == len(variants)
    assert run(params, tmp_path) == metrics
    assert read_jsonl(tmp_path / "data/flows/augmented.jsonl") == variants


def test_missing_extra_dir_is_a_clear_error(tmp_path):
    params = Params.model_validate({"flows": {"variants_per_base": 1, "extra_base_dirs": ["nowhere"]}})
    with pytest.raises(FlowRLError, match="nowhere not found; fix the path"):
        run(params, tmp_path)
