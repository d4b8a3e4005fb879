"""Two-pass KSamplerAdvanced flows hand over at one step of one schedule: the rules every training flow keeps
(comfy.usable.handover_problems), kept by constrained decoding, counted unusable when broken, and parsed in every
two-pass training flow (base + augmented)."""

from __future__ import annotations

import copy
import math

import pytest

from flowrl.comfy.usable import handover_problems
from flowrl.data.augment import augment_library
from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.grammar import ConstraintError
from flowrl.encoding.policy_view import check_flow_text, policy_text, strip_graph
from flowrl.encoding.schema import infer_schema
from flowrl.encoding.vocab import extend_tokenizer, flow_tokens
from flowrl.policy.decoding.constrained import FlowConstraint, FlowGrammar
from tests.policy.test_constrained import _value_choices, allowed_after, fc, setup  # noqa: F401 (fixtures)

HEAD = (
    "CheckpointLoaderSimple ckpt_name=dreamshaper_8.safetensors\nCLIPTextEncode clip=@1.1 text=<negative>\n"
    "CLIPTextEncode clip=@1.1 text=<prompt>\nEmptyLatentImage width=512 height=768 batch_size=1\n"
)
FIRST = (
    "KSamplerAdvanced latent_image=@4 model=@1 negative=@2 positive=@3 add_noise=enable steps=30 cfg=7.0 sampler_name=uni_pc "
    "scheduler=normal start_at_step=0 end_at_step=20 return_with_leftover_noise=enable\n"
)
SECOND = (
    "KSamplerAdvanced latent_image=@5 model=@1 negative=@2 positive=@3 add_noise=disable steps=30 cfg=7.0 sampler_name=uni_pc "
    "scheduler=normal start_at_step=20 end_at_step=10000 return_with_leftover_noise=disable\n"
)
TAIL = "VAEDecode samples=@6 vae=@1.2\nSaveImage images=@7"
FLOW = HEAD + FIRST + SECOND + TAIL


def _upto(line: str, name: str) -> str:
    return line.split(f" {name}=")[0] + f" {name}="


def test_the_training_two_pass_flow_is_usable():
    assert check_flow_text(FLOW).usable


@pytest.mark.parametrize(
    "old, new, rule",
    [
        (
            "steps=30 cfg=7.0 sampler_name=uni_pc scheduler=normal start_at_step=20",
            "steps=31 cfg=7.0 sampler_name=uni_pc scheduler=normal start_at_step=20",
            "steps",
        ),
        ("start_at_step=20 end_at_step=10000", "start_at_step=27 end_at_step=10000", "start_at_step"),
        ("add_noise=disable", "add_noise=enable", "add_noise"),
        ("scheduler=normal start_at_step=20", "scheduler=karras start_at_step=20", "scheduler"),
        ("add_noise=enable steps=30", "add_noise=disable steps=30", "add_noise"),  # a fresh pass without noise
        ("start_at_step=0 end_at_step=20", "start_at_step=5 end_at_step=20", "start_at_step"),
        (
            "end_at_step=20 return_with_leftover_noise=enable",
            "end_at_step=20 return_with_leftover_noise=disable",
            "return_with_leftover_noise",
        ),
        (
            "end_at_step=10000 return_with_leftover_noise=disable",
            "end_at_step=25 return_with_leftover_noise=disable",
            "return_with_leftover_noise",
        ),
        ("VAEDecode samples=@6", "VAEDecode samples=@5", "samples"),  # the leftover noise decoded
    ],
)
def test_each_broken_rule_is_unusable_and_named(old, new, rule):
    broken = FLOW.replace(old, new, 1)
    assert broken != FLOW
    check = check_flow_text(broken)
    assert check.valid and not check.usable
    assert any(f"input {rule!r}" in p for p in check.problems), check.problems


def test_the_issue_flow_22_of_39_then_27_of_31_is_unusable():
    broken = (
        FLOW.replace("steps=30", "steps=39", 1)
        .replace("end_at_step=20", "end_at_step=22")
        .replace("steps=30", "steps=31")
        .replace("start_at_step=20", "start_at_step=27")
    )
    problems = check_flow_text(broken).problems
    assert all(any(f"input {rule!r}" in p for p in problems) for rule in ("steps", "start_at_step")), problems


def test_decoding_pins_the_second_pass_to_the_first(fc):  # noqa: F811
    head = HEAD + FIRST
    assert _value_choices(fc, head + _upto(SECOND, "add_noise")) == ["disable"]
    assert _value_choices(fc, head + _upto(SECOND, "steps")) == ["30"]
    assert _value_choices(fc, head + _upto(SECOND, "start_at_step")) == ["20"]
    assert _value_choices(fc, head + _upto(SECOND, "scheduler")) == ["normal"]
    assert len(_value_choices(fc, head + _upto(SECOND, "sampler_name"))) > 1  # sampler, cfg and end stay free
    assert len(allowed_after(fc, head + _upto(SECOND, "cfg"))) > 1
    assert _value_choices(fc, head + _upto(SECOND, "return_with_leftover_noise")) == ["disable"]  # 10000 >= 30 steps
    assert allowed_after(fc, head + SECOND + "VAEDecode samples=") == {"@6"}  # not the leftover noise of @5


def test_decoding_a_fresh_pass_adds_noise_from_step_0_and_returns_leftover_before_its_last_step(fc):  # noqa: F811
    assert _value_choices(fc, HEAD + _upto(FIRST, "add_noise")) == ["enable"]
    assert _value_choices(fc, HEAD + _upto(FIRST, "start_at_step")) == ["0"]
    assert _value_choices(fc, HEAD + _upto(FIRST, "return_with_leftover_noise")) == ["enable"]  # 20 < 30
    # the end comes after the start: '0' can start no end_at_step of a pass that starts at 0
    assert "0" not in allowed_after(fc, HEAD + _upto(FIRST, "end_at_step"))


def test_written_first_a_continuing_value_narrows_the_latent_link(fc):  # noqa: F811
    """Fields written before the latent (any order is allowed) pick the passes the line can still follow: no dead end."""
    head = HEAD + FIRST + "EmptyLatentImage width=512 height=512 batch_size=1\n"  # line 6: a second fresh latent
    assert allowed_after(fc, head + "KSamplerAdvanced add_noise=disable latent_image=") == {"@5"}
    assert allowed_after(fc, head + "KSamplerAdvanced add_noise=enable latent_image=") == {"@6"}
    assert _value_choices(fc, head + "KSamplerAdvanced add_noise=disable steps=") == ["30"]
    assert _value_choices(fc, head + "KSamplerAdvanced steps=31 add_noise=") == [
        "enable"
    ]  # 31 steps: no pass to continue
    assert allowed_after(fc, head + "KSamplerAdvanced steps=31 latent_image=") == {"@6"}


@pytest.fixture(scope="module")
def training_flows():
    rows, _ = augment_library(
        [(f"lib-{n}", g) for n, g in load_base_flows()], 60, 1234
    )  # params.yaml: variants_per_base, seed
    return load_base_flows() + [(r["id"], r["graph"]) for r in rows]


def test_every_training_flow_keeps_the_rules(training_flows):
    two_pass = [n for n, g in training_flows if any(v["class_type"] == "KSamplerAdvanced" for v in g.values())]
    assert len(two_pass) >= 200  # 4 base flows x 61
    assert not [(n, handover_problems(g)) for n, g in training_flows if handover_problems(g)]


def test_every_two_pass_training_flow_parses_under_every_rule(training_flows, _base_tokenizer):
    tok = copy.deepcopy(_base_tokenizer)
    schema = infer_schema(
        strip_graph(g) for _, g in training_flows
    )  # the encode stage's schema covers the augmented ranges
    extend_tokenizer(tok, flow_tokens(schema))
    constraint = FlowConstraint(tok, schema, grammar=FlowGrammar(tok, schema))
    refused = []
    for name, graph in training_flows:
        if any(v["class_type"] == "KSamplerAdvanced" for v in graph.values()):
            try:
                constraint.feed(constraint._new_row(), policy_text(graph))
            except ConstraintError as exc:
                refused.append(f"{name}: {exc}")
    assert not refused, refused


@pytest.mark.parametrize("extra", [60, 100, 200])
def test_finishing_continues_a_pass_left_with_leftover_noise(setup, extra):  # noqa: F811
    """Driven by random scores from a first pass, sampling ends with EOS, no dead end, and the passes hand over."""
    import torch

    tok, schema, grammar = setup
    pre = tok.encode(HEAD + FIRST, add_special_tokens=False)
    constraint = FlowConstraint(tok, schema, prompt_length=3, max_new_tokens=len(pre) + extra, grammar=grammar)
    ids = torch.tensor([[0, 0, 0] + pre])
    torch.manual_seed(extra)
    for _ in range(extra):
        nxt = int(constraint(ids, torch.randn(1, len(tok)) * 3).argmax(-1))
        if nxt == tok.eos_token_id:
            break
        ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    else:
        pytest.fail(f"no EOS within {extra} tokens")
    text = tok.decode(ids[0, 3:].tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False)
    check = check_flow_text(text)
    assert check.valid and constraint.n_dead_ends == 0, text
    assert not handover_problems(check.graph), text


KSAMPLER = (
    "CheckpointLoaderSimple ckpt_name=dreamshaper_8.safetensors\nCLIPTextEncode clip=@1.1 text=<prompt>\n"
    "CLIPTextEncode clip=@1.1 text=<negative>\nEmptyLatentImage width=512 height=768 batch_size=1\n"
    "KSampler model=@1 positive=@2 negative=@3 latent_image=@4 steps=25 cfg=7.0 sampler_name=euler scheduler=normal denoise=1.0\n"
    "VAEDecode samples=@5 vae=@1.2\nSaveImage images=@6"
)


def test_a_ksampler_on_an_empty_latent_denoises_fully(fc):  # noqa: F811
    """Every first-pass KSampler of the training flows has denoise 1 (every hires pass < 1): a partial one is washed out."""
    assert check_flow_text(KSAMPLER).usable
    broken = check_flow_text(KSAMPLER.replace("denoise=1.0", "denoise=0.5"))
    assert broken.valid and not broken.usable and any("input 'denoise'" in p for p in broken.problems)
    assert set(_value_choices(fc, KSAMPLER.split("denoise=")[0] + "denoise=")) <= {"1", "1.0"}
    hires = KSAMPLER.split("VAEDecode")[0] + "LatentUpscaleBy samples=@5 upscale_method=nearest-exact scale_by=1.5\n"
    assert "0" in allowed_after(
        fc,
        hires + "KSampler model=@1 positive=@2 negative=@3 latent_image=@6 steps=15 cfg=7.0 "
        "sampler_name=euler scheduler=normal denoise=",
    )  # a hires pass stays free
    two = hires + "EmptyLatentImage width=512 height=512 batch_size=1\n"  # line 7: a second empty latent, unused
    assert allowed_after(fc, two + "KSampler denoise=1.0 latent_image=") == {"@6", "@7"}
    assert allowed_after(fc, two + "KSampler denoise=0.5 latent_image=") == {
        "@6"
    }  # a partial denoise: not an empty latent


def test_every_training_flow_is_written_under_the_class_counts_and_loader_rules(training_flows, _base_tokenizer):
    """What the mask adds to the parse (counts of training flows, one file per loader line, a refiner as the second
    checkpoint) refuses no line of any training flow: each line's class and loaded file are among the allowed."""
    tok = copy.deepcopy(_base_tokenizer)
    schema = infer_schema(strip_graph(g) for _, g in training_flows)
    extend_tokenizer(tok, flow_tokens(schema))
    constraint = FlowConstraint(tok, schema, grammar=FlowGrammar(tok, schema))
    refused = []
    for name, graph in training_flows:
        row = constraint._new_row()
        for line in policy_text(graph).split("\n"):
            written = max(
                (w for w in constraint._struct_forms(row, math.inf, False, capped=False)[0] if line.startswith(w)),
                key=len,
            )
            if written not in constraint._struct_forms(row, math.inf, False)[0]:
                refused.append(f"{name}: {written} after {row.classes}")
                break
            constraint.feed(row, line + "\n")
    assert not refused, refused[:5]
