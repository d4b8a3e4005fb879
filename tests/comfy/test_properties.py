"""Property-based tests (hypothesis): generated graphs round-trip through the codec and the UI converter;
generated malformed input ends in a FlowRLError or a correct result, never another exception.

Bounded: few examples per property and a deadline, so the file runs in seconds (`make test`).
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowrl.comfy.catalog import load_catalog
from flowrl.comfy.graph import is_link, parse_json_text, parse_workflow, workflow_json
from flowrl.comfy.ui import ui_to_api
from flowrl.encoding.codec import canonical_form, decode_flow, encode_flow
from flowrl.errors import FlowRLError

CATALOG = load_catalog()  # loaded once here, so no example pays for it against the deadline
# derandomize: the same examples every run, so CI cannot fail on a new random draw; run with
# --hypothesis-seed=random (or drop derandomize) to search further, as the lone-surrogate case was found
BOUNDED = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# text as workflows carry it (no lone surrogates: JSON files cannot hold them), with the codec's hard cases
texts = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=10),
    st.sampled_from(
        [
            "",
            " ",
            "a b",
            "\t",
            "@1",
            "@2.1",
            "NaN",
            "-Infinity",
            "true",
            "null",
            "42",
            "1e5",
            "x=y",
            "=",
            '"q"',
            "[1]",
            "{}",
            "\ufeffBOM",
            "line\nbreak",
            "\u2028",
            "猫 ü",
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False),
    texts,
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=6
).filter(lambda v: not is_link(v))
known_types = st.sampled_from(["KSampler", "CLIPTextEncode", "VAEDecode", "SaveImage", "CheckpointLoaderSimple"])
custom_types = st.from_regex(r"Custom[A-Za-z]{1,6}", fullmatch=True)  # not in the catalog: widgets named by the file


@st.composite
def api_graphs(draw, class_types=st.one_of(known_types, texts.filter(bool))) -> dict:
    """An acyclic API graph: 1-7 nodes with arbitrary ids, class types, input names and values; links point back."""
    ids = draw(st.lists(st.text("0123456789abcxyz:", min_size=1, max_size=4), min_size=1, max_size=7, unique=True))
    graph = {}
    for i, nid in enumerate(ids):
        inputs = draw(st.dictionaries(texts, values, max_size=4))
        for _ in range(draw(st.integers(0, 2)) if i else 0):
            inputs[draw(texts)] = [draw(st.sampled_from(ids[:i])), draw(st.integers(0, 3))]
        graph[nid] = {"class_type": draw(class_types), "inputs": inputs}
    return graph


def _same(a: dict, b: dict) -> bool:
    """Equal graphs, node and input order included."""
    return json.dumps(a) == json.dumps(b)


@BOUNDED
@given(api_graphs())
def test_generated_graphs_round_trip_through_the_codec(graph):
    assert _same(decode_flow(encode_flow(graph)), canonical_form(graph))


@BOUNDED
@given(api_graphs())
def test_encoding_ignores_node_ids_and_order(graph):
    renamed = {
        f"n{k}": {
            "class_type": n["class_type"],
            "inputs": {name: [f"n{v[0]}", v[1]] if is_link(v) else v for name, v in n["inputs"].items()},
        }
        for k, n in reversed(list(graph.items()))
    }
    assert encode_flow(renamed) == encode_flow(graph)


@st.composite
def ui_documents(draw) -> tuple[dict, dict]:
    """(UI workflow, the API graph it must convert to): custom node types whose widgets the file names."""
    graph = draw(api_graphs(class_types=custom_types))
    number = {nid: i for i, nid in enumerate(graph, 1)}
    nodes, links = [], []
    for nid, node in graph.items():
        inputs, widgets = [], []
        for name, value in node["inputs"].items():
            if is_link(value):
                links.append([len(links) + 1, number[value[0]], value[1], number[nid], len(inputs), "*"])
                inputs.append({"name": name, "type": "*", "link": len(links)})
            else:
                inputs.append({"name": name, "type": "*", "link": None, "widget": {"name": name}})
                widgets.append(value)
        nodes.append(
            {
                "id": number[nid],
                "type": node["class_type"],
                "mode": 0,
                "inputs": inputs,
                "outputs": [{"name": f"o{j}", "type": "*"} for j in range(4)],
                "widgets_values": widgets,
            }
        )
    expected = {
        str(number[nid]): {
            "class_type": n["class_type"],
            "inputs": {k: [str(number[v[0]]), v[1]] if is_link(v) else v for k, v in n["inputs"].items()},
        }
        for nid, n in graph.items()
    }
    return {"nodes": nodes, "links": links, "version": 0.4}, expected


@BOUNDED
@given(ui_documents())
def test_generated_ui_workflows_convert_exactly(case):
    ui, expected = case
    assert ui_to_api(ui, "gen.json", CATALOG) == expected


NASTY = st.sampled_from(
    [" ", "\t", "\n", '"', "@", "=", "[", "]", "{", "}", "\\", "\ufeff", "\x00", "\ud800", "0", "."]
)


@BOUNDED
@given(api_graphs(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2), NASTY), min_size=1, max_size=3))
def test_damaged_encodings_fail_cleanly_or_decode_to_an_encodable_graph(graph, edits):
    text = encode_flow(graph)
    for pos, op, char in edits:
        pos %= len(text) + 1
        text = (
            text[:pos] + char + text[pos:]
            if op == 0
            else text[:pos] + char + text[pos + 1 :]
            if op == 1
            else text[:pos] + text[pos + 1 :]
        )
    _decode_or_clean_error(text)


@BOUNDED
@given(st.text(st.characters(blacklist_categories=()), max_size=80))
def test_arbitrary_text_fails_cleanly_or_decodes(text):
    _decode_or_clean_error(text)


def _decode_or_clean_error(text: str) -> None:
    """decode_flow either raises a FlowRLError or returns a graph that encodes and decodes back to itself."""
    try:
        graph = decode_flow(text)
    except FlowRLError:
        return
    assert _same(decode_flow(encode_flow(graph)), canonical_form(graph))
    try:
        workflow_json(graph)  # what the CLI prints: strict JSON or a clean error (NaN, lone surrogate, depth)
    except FlowRLError:
        pass


JUNK = st.one_of(
    scalars,
    st.just([]),
    st.just({}),
    st.just(["1", 0]),
    st.just([None, None]),
    st.just(10**30),
    st.just(float("inf")),
    st.just(float("nan")),
)


@BOUNDED
@given(
    ui_documents(),
    st.lists(st.tuples(st.lists(st.integers(0, 50), min_size=1, max_size=4), JUNK), min_size=1, max_size=3),
)
def test_damaged_ui_workflows_fail_cleanly_or_convert(case, damage):
    ui = json.loads(json.dumps(case[0]))
    for path, junk in damage:
        _put(ui, path, junk)
    try:
        graph = parse_workflow(ui, "damaged.json")
    except FlowRLError as exc:
        assert "damaged.json" in str(exc)
        return
    assert all(isinstance(n["class_type"], str) and isinstance(n["inputs"], dict) for n in graph.values())
    try:
        encode_flow(graph)
    except FlowRLError:
        pass


def _put(doc, path: list[int], junk) -> None:
    """Replace the value reached by following `path` (indices into keys/items, modulo their count) by `junk`."""
    for depth, step in enumerate(path):
        keys = list(doc) if isinstance(doc, dict) else list(range(len(doc))) if isinstance(doc, list) else []
        if not keys:
            return
        key = keys[step % len(keys)]
        if depth == len(path) - 1 or not isinstance(doc[key], (dict, list)):
            doc[key] = junk
            return
        doc = doc[key]


json_docs = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["nodes", "links", "class_type", "inputs", "id", "type", "1", "2", "prompt", "widgets_values"]
            )
            | texts,
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@BOUNDED
@given(json_docs)
def test_arbitrary_json_is_a_graph_or_a_clean_error(doc):
    try:
        graph = parse_workflow(doc, "any.json")
    except FlowRLError:
        return
    assert graph and all(isinstance(n["class_type"], str) and isinstance(n["inputs"], dict) for n in graph.values())


@BOUNDED
@given(
    st.one_of(
        st.text(st.characters(blacklist_categories=()), max_size=60),
        json_docs.map(lambda d: json.dumps(d, ensure_ascii=False)),
        st.sampled_from(['{"a": 1, "a": 2}', '{"x": NaN}', "[Infinity]", '"\\ud800"', '\ufeff{"1": {}}', "[" * 200]),
    )
)
def test_strict_json_reader_accepts_only_clean_json(text):
    try:
        data = parse_json_text(text, "t.json")
    except FlowRLError as exc:
        assert str(exc).startswith("t.json: ")
        return
    json.dumps(data, allow_nan=False).encode("utf-8")  # what was accepted is strict JSON and real text


@BOUNDED
@given(
    ui_documents().filter(lambda case: case[0]["links"]),
    st.integers(0, 100),
    st.sampled_from(["drop", "origin", "slot", "no-links"]),
)
def test_a_broken_link_is_named_never_dropped(case, pick, how):
    ui = json.loads(json.dumps(case[0]))
    link = ui["links"][pick % len(ui["links"])]
    if how == "drop":
        ui["links"].remove(link)
    elif how == "origin":
        link[1] = 10**6
    elif how == "slot":
        link[2] = 99
    else:
        del ui["links"]
    target = next(n for n in ui["nodes"] if any(i.get("link") == link[0] for i in n["inputs"]))  # the only broken input
    try:
        ui_to_api(ui, "broken.json", CATALOG)
    except FlowRLError as exc:
        named = "no 'links' list" if how == "no-links" else f"node {target['id']} ({target['type']}) input"
        assert named in str(exc) and "link" in str(exc) and str(exc).startswith("broken.json: ")
    else:
        raise AssertionError(f"{how}: link {link[0]} was silently dropped")


@BOUNDED
@given(ui_documents(), st.integers(0, 100))
def test_a_duplicate_node_id_is_named_never_merged(case, pick):
    ui = json.loads(json.dumps(case[0]))
    twin = dict(ui["nodes"][pick % len(ui["nodes"])], inputs=[], widgets_values=[])
    ui["nodes"].append(twin)
    try:
        ui_to_api(ui, "twins.json", CATALOG)
    except FlowRLError as exc:
        assert f"both have id {twin['id']}" in str(exc)
    else:
        raise AssertionError("a duplicate node id was silently merged")


# /object_info entries: mostly well-formed, with any part replaced by arbitrary JSON (issue 25)
_specs = st.one_of(
    st.just(["MODEL"]),
    st.just(["INT", {"min": 0, "max": 10}]),
    st.just([["a.safetensors", "b.ckpt"], {}]),
    st.just(["COMBO", {"options": ["x"]}]),
    json_docs,
)
_entries = st.one_of(
    st.fixed_dictionaries(
        {
            "input": st.one_of(
                st.fixed_dictionaries({"required": st.dictionaries(texts, _specs, max_size=3)}), json_docs
            ),
            "output": st.one_of(st.just(["MODEL", "CLIP", "VAE"]), json_docs),
        }
    ),
    json_docs,
)


@BOUNDED
@given(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["CheckpointLoaderSimple", "KSampler", "VAEDecode", "X"]), _entries, max_size=4
        ),
        json_docs,
    ),
    api_graphs(known_types),
)
def test_any_object_info_is_read_exactly_or_refused_naming_a_field(dump, graph):
    """A dump is an ObjectInfo whose catalog and installed-check work on any graph, or an ObjectInfoError; never
    another exception and never a dump silently cut to the entries that could be read."""
    from flowrl.comfy.object_info import ObjectInfo, ObjectInfoError, check_installed

    try:
        info = ObjectInfo.from_dict(dump, "dump.json")
    except ObjectInfoError as exc:
        assert str(exc).startswith("dump.json: ")
        return
    assert info.nodes == dump  # every entry kept
    check_installed(graph, info)


@BOUNDED
@given(api_graphs(st.one_of(known_types, custom_types, st.just(""), st.just(" "))))
def test_any_api_graph_exports_or_is_refused(graph):
    """to-ui on generated graphs (links to any output slot 0-3, empty class types): a UI workflow whose every link
    starts at an output its node has, or a FlowRLError (issue 25: a missing slot and an empty class_type)."""
    from flowrl.comfy.ui_export import api_to_ui

    try:
        ui = api_to_ui(graph, source="g.json")
    except FlowRLError:
        return
    by_id = {n["id"]: n for n in ui["nodes"]}
    assert all(n["type"].strip() for n in ui["nodes"])
    for _, src, slot, _, _, _ in ui["links"]:
        spec = CATALOG.get(by_id[src]["type"])
        assert slot < len(by_id[src]["outputs"]) and (spec is None or slot < len(spec.outputs))
