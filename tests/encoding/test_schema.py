"""Schema inference and its JSON round trip."""

from __future__ import annotations

import json

import pytest

from flowrl.encoding.schema import Schema, SchemaError, infer_schema
from tests.encoding.graphs import T2I


def test_infer_fields_kinds_types_and_vocab():
    other = json.loads(json.dumps(T2I))
    other["3"]["inputs"]["sampler_name"] = "dpmpp_2m"
    schema = infer_schema([T2I, T2I, other])
    assert schema.n_graphs == 3 and schema.max_nodes == len(T2I)
    ks = schema.classes["KSampler"]
    assert ks.count == 3
    assert ks.fields["model"].kind == "link" and ks.fields["model"].output_indices == [0]
    assert ks.fields["cfg"].types == {"float": 3} and ks.fields["steps"].types == {"int": 3}
    assert ks.fields["sampler_name"].vocab == {"euler": 2, "dpmpp_2m": 1}
    assert schema.classes["VAEDecode"].fields["vae"].output_indices == [2]
    assert schema.vocabulary("sampler_name") == ["dpmpp_2m", "euler"]


def test_vocab_is_capped_most_common_first():
    graphs = [{"1": {"class_type": "X", "inputs": {"s": f"v{i % 5}" if i < 10 else f"rare{i}"}}} for i in range(30)]
    f = infer_schema(graphs, max_vocab=3).classes["X"].fields["s"]
    assert list(f.vocab) == ["v0", "v1", "v2"] and f.vocab_truncated


def test_save_load_round_trip(tmp_path, api_graphs):
    schema = infer_schema(api_graphs.values())
    path = schema.save(tmp_path / "schema.json")
    assert json.loads(path.read_text())["version"] == 1
    assert Schema.load(path) == schema


def test_load_rejects_bad_files(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"version": 0, "classes": {}}))
    with pytest.raises(SchemaError, match="old.json: schema version 0"):
        Schema.load(tmp_path / "old.json")
    (tmp_path / "broken.json").write_text(json.dumps({"version": 1, "classes": {"X": {}}}))
    with pytest.raises(SchemaError, match="broken.json: malformed"):
        Schema.load(tmp_path / "broken.json")
    with pytest.raises(SchemaError, match="missing.json"):
        Schema.load(tmp_path / "missing.json")


def test_max_per_graph_counts_the_most_nodes_of_a_class_in_one_graph_and_old_files_load_uncapped(tmp_path):
    two = json.loads(json.dumps(T2I))
    two["99"] = json.loads(json.dumps(T2I["3"]))  # a second KSampler in one graph
    schema = infer_schema([T2I, two, T2I])
    assert schema.classes["KSampler"].max_per_graph == 2 and schema.classes["VAEDecode"].max_per_graph == 1
    data = schema.to_dict()
    assert Schema.from_dict(data) == schema
    for c in data["classes"].values():  # a schema saved before the count existed
        del c["max_per_graph"]
    assert Schema.from_dict(data).classes["KSampler"].max_per_graph == 0
