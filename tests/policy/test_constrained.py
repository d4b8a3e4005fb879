"""Constrained decoding: every masking rule on hand-made partial flows, finishing on a budget, and sampling."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import AutoTokenizer

from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.policy_view import check_flow_text, strip_graph
from flowrl.encoding.schema import infer_schema
from flowrl.encoding.vocab import extend_tokenizer, flow_tokens
from flowrl.policy.decoding.constrained import (
    SCHEMA_FILE,
    FlowConstraint,
    FlowGrammar,
    constraint_processors,
    tokenizer_schema,
)
from flowrl.policy.decoding.sampling import SamplingConfig, sample_flows
from flowrl.policy.loading import build_tiny_model

CKPT = "CheckpointLoaderSimple ckpt_name=sd_xl_base_1.0.safetensors"


@pytest.fixture(scope="module")
def setup(_base_tokenizer):
    tok = copy.deepcopy(_base_tokenizer)
    schema = infer_schema(
        strip_graph(g) for _, g in load_base_flows()
    )  # the policy view, as the encode stage infers it
    extend_tokenizer(tok, flow_tokens(schema))
    return tok, schema, FlowGrammar(tok, schema)


@pytest.fixture
def fc(setup):
    tok, schema, grammar = setup
    return FlowConstraint(tok, schema, grammar=grammar)


def is_valid(text: str) -> bool:
    return check_flow_text(text).valid


def allowed_after(fc: FlowConstraint, text: str, budget: float = math.inf) -> set[str]:
    """Texts of the tokens allowed after the partial flow `text` ('<EOS>' for EOS)."""
    row = fc._new_row()
    fc.feed(row, text)
    ids = fc.allowed(row, budget).nonzero().flatten().tolist()
    return {"<EOS>" if i == fc.g.eos else fc.g.tokens[i] for i in ids}


def test_line_start_only_known_classes_whose_links_exist(fc):
    first = allowed_after(fc, "")
    assert "CheckpointLoaderSimple" in first and "EmptyLatentImage" in first
    assert "KSampler" not in first and "CLIPTextEncode" not in first  # their MODEL/CLIP links have no source yet
    assert "<EOS>" not in first and "\n" not in first
    assert first <= {r.form for r in fc.g.classes.values()}
    assert "CLIPTextEncode" in allowed_after(fc, CKPT + "\n")


def test_names_of_the_class_each_once_and_newline_only_when_required_present(fc):
    assert allowed_after(fc, "CheckpointLoaderSimple") == {" ckpt_name="}
    after = allowed_after(fc, "EmptyLatentImage width=512")
    assert " height=" in after and " batch_size=" in after and " width=" not in after and " ckpt_name=" not in after
    assert "\n" not in after
    assert "\n" in allowed_after(fc, "EmptyLatentImage width=512 height=512 batch_size=1")


def test_closed_choices_and_vocabulary_values(fc):
    ksampler = (
        CKPT + "\nCLIPTextEncode clip=@1.1 text=<prompt>\nEmptyLatentImage width=512 height=512 batch_size=1\n"
        "KSampler model=@1 positive=@2 negative=@2 latent_image=@3 sampler_name="
    )
    samplers = allowed_after(fc, ksampler)
    assert (
        "euler" in samplers
        and "dpmpp_2m" in samplers
        and "sd_xl_base_1.0.safetensors" not in samplers
        and "cat" not in samplers
    )
    ckpts = allowed_after(fc, "CheckpointLoaderSimple ckpt_name=")
    assert "sd_xl_base_1.0.safetensors" in ckpts and "euler" not in ckpts and '"' not in ckpts


def test_numbers_ints_floats_and_bounds(fc):
    # ranges are the training flows' (schema min/max: widths 512..1216 in the base flows), not the node's 16..16384
    width = allowed_after(fc, "EmptyLatentImage width=")
    assert {"1", "5", "9"} <= width and "2" not in width and "-" not in width and "." not in width and "a" not in width
    zero = allowed_after(fc, "EmptyLatentImage width=0")
    assert not zero  # '0' is below min 512 and '01' is no JSON number
    assert " height=" in allowed_after(fc, "EmptyLatentImage width=512") and " height=" not in allowed_after(
        fc, "EmptyLatentImage width=51"
    )
    assert allowed_after(fc, "EmptyLatentImage width=512 height=512 batch_size=") == {
        "1"
    }  # batch 1 in every training flow
    ks = (
        CKPT
        + "\nCLIPTextEncode clip=@1.1 text=<prompt>\nEmptyLatentImage width=512 height=512 batch_size=1\nKSampler denoise="
    )
    assert "." in allowed_after(fc, ks + "1") and "0" not in allowed_after(fc, ks + "1")  # 10 > max 1.0
    assert "0" in allowed_after(fc, ks + "1.") and "5" not in allowed_after(fc, ks + "1.")
    assert "-" not in allowed_after(fc, ks[: -len("denoise=")] + "steps=")  # INT, min 1
    assert "5" not in allowed_after(fc, ks[: -len("denoise=")] + "steps=4")  # 45 > the training flows' 40 steps
    assert "-" in allowed_after(
        fc,
        "CheckpointLoaderSimple ckpt_name=sd_xl_base_1.0.safetensors\nCLIPSetLastLayer clip=@1.1 stop_at_clip_layer=",
    )  # min -24
    assert "0" not in allowed_after(
        fc,
        "CheckpointLoaderSimple ckpt_name=sd_xl_base_1.0.safetensors\nCLIPSetLastLayer clip=@1.1 stop_at_clip_layer=",
    )  # max -1


def test_strings_json_quoted_or_vocabulary(fc):
    text = CKPT + "\nCLIPTextEncode clip=@1.1 text="
    start = allowed_after(fc, text)
    assert '"' in start and "<prompt>" in start and "euler" not in start and "cat" not in start
    inside = allowed_after(fc, text + '"a')
    assert " cat" in inside and '"' in inside and "\n" not in inside and "\t" not in inside
    escape = allowed_after(fc, text + '"a\\')
    assert "n" in escape and '"' in escape and "x" not in escape
    assert "\n" in allowed_after(fc, text + '"a cat"')


def test_booleans(fc):
    boost = allowed_after(fc, CKPT + '\n"Automatic CFG" model=@1 boost=')
    assert "true" in boost and "false" in boost
    assert all("true".startswith(t) or "false".startswith(t) for t in boost)


def test_links_only_to_earlier_lines_of_the_right_type(fc):
    clip = allowed_after(fc, CKPT + "\nCLIPTextEncode clip=")
    assert "@1" in clip and "@2" not in clip
    after = allowed_after(fc, CKPT + "\nCLIPTextEncode clip=@1")  # output 0 is MODEL: CLIP is output 1
    assert "." in after and " text=" not in after and "2" not in after
    assert " text=" in allowed_after(fc, CKPT + "\nCLIPTextEncode clip=@1.1")
    vae = allowed_after(
        fc,
        CKPT
        + "\nVAELoader vae_name=sdxl_vae.safetensors\nEmptyLatentImage width=512 height=512 batch_size=1\nVAEDecode vae=",
    )
    assert {"@1", "@2"} <= vae and "@3" not in vae  # VAE: output 2 of line 1, output 0 of line 2; line 3 gives LATENT


SAMPLER = (
    "CLIPTextEncode clip=@1.1 text=<prompt>\nCLIPTextEncode clip=@1.1 text=<negative>\n"
    "KSampler model=@1 positive=@{c} negative=@{n} latent_image=@2 steps=20 "
    "cfg=7 sampler_name=euler scheduler=normal denoise=1\n"
)


def test_eos_only_with_an_output_node_a_sampler_no_orphan_and_a_complete_line(fc, monkeypatch):
    monkeypatch.setattr(
        fc.g, "max_per_flow", {}
    )  # the orphan below is a second EmptyLatentImage, which no training flow has
    head = CKPT + "\nEmptyLatentImage width=512 height=512 batch_size=1\n"
    done = (
        head + SAMPLER.format(c=3, n=4) + "VAEDecode samples=@5 vae=@1.2\nSaveImage images=@6"
    )  # seeds and prefix are filled later
    assert "<EOS>" in allowed_after(fc, done) and "<EOS>" in allowed_after(fc, done + "\n")
    assert is_valid(done) and check_flow_text(done).usable
    assert "<EOS>" not in allowed_after(fc, CKPT)
    # valid for ComfyUI, but an empty latent decoded as is: no image is made, so no EOS without a sampler
    no_sampler = head + "VAEDecode samples=@2 vae=@1.2\nSaveImage images=@3"
    assert is_valid(no_sampler) and "<EOS>" not in allowed_after(fc, no_sampler)
    # ... and a sampler added after the output feeds nothing: no EOS while a node is an orphan, unless the budget ends
    late_sampler = no_sampler + "\n" + SAMPLER.format(c=5, n=6).rstrip("\n")
    assert is_valid(late_sampler) and not check_flow_text(late_sampler).usable
    assert "<EOS>" not in allowed_after(fc, late_sampler) and "<EOS>" in allowed_after(fc, late_sampler, budget=1)
    orphan = (
        head
        + "EmptyLatentImage width=768 height=768 batch_size=1\n"
        + SAMPLER.format(c=4, n=5)
        + "VAEDecode samples=@6 vae=@1.2\nSaveImage images=@7"
    )
    assert "<EOS>" not in allowed_after(fc, orphan)


def test_grammar_knows_which_classes_are_samplers(fc):
    assert {"KSampler", "KSamplerAdvanced"} <= set(fc.g.samplers)
    assert not {"FaceDetailer", "EmptyLatentImage", "CheckpointLoaderSimple"} & set(fc.g.samplers)


def test_without_a_schema_on_disk_every_value_token_fills_every_file_field_and_with_it_only_its_own(
    setup, tiny_params, tmp_path
):
    tok, schema, _ = setup
    on = tiny_params.policy.model_copy(update={"constrained": True})
    (loose,) = constraint_processors(on, tok, 50)
    assert "euler" in allowed_after(loose, "CheckpointLoaderSimple ckpt_name=")  # a sampler name passes as a checkpoint
    saved = copy.deepcopy(tok)
    saved.save_pretrained(str(tmp_path))
    schema.save(tmp_path / SCHEMA_FILE)
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert tokenizer_schema(reloaded) == tmp_path / SCHEMA_FILE
    (strict,) = constraint_processors(on, reloaded, 50)
    ckpts = allowed_after(strict, "CheckpointLoaderSimple ckpt_name=")
    assert "sd_xl_base_1.0.safetensors" in ckpts and "euler" not in ckpts


def test_noop_inside_the_prompt_and_per_row_prompt_lengths(setup):
    tok, schema, grammar = setup
    scores = torch.randn(2, len(tok))
    ids = torch.ones(2, 6, dtype=torch.long)
    assert torch.equal(FlowConstraint(tok, schema, prompt_length=10, grammar=grammar)(ids, scores), scores)
    out = FlowConstraint(tok, schema, prompt_length=[6, 8], grammar=grammar)(ids, scores)
    assert torch.equal(out[1], scores[1])  # row 1 is still inside its prompt
    assert torch.isinf(out[0]).sum() > len(tok) - 100 and torch.isfinite(out[0]).any()


@pytest.mark.parametrize("budget", [120, 160, 240])  # the cheapest flow with a sampler is ~110 tokens
def test_budget_steers_to_a_complete_flow(setup, budget):
    """Driving the processor alone (first allowed token each step) ends with EOS within the budget, and validates."""
    tok, schema, grammar = setup
    fc = FlowConstraint(tok, schema, max_new_tokens=budget, grammar=grammar)
    ids = torch.zeros(1, 3, dtype=torch.long)
    torch.manual_seed(budget)
    for _ in range(budget):
        scores = fc(ids, torch.randn(1, len(tok)))
        nxt = int(scores.argmax(-1))
        if nxt == tok.eos_token_id:
            break
        ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    else:
        pytest.fail(f"no EOS within {budget} tokens")
    text = tok.decode(ids[0, 3:].tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert is_valid(text), text
    assert "KSampler" in text and fc.n_dead_ends == 0


def test_a_budget_below_the_cheapest_flow_keeps_the_grammar_without_finishing(setup):
    tok, schema, grammar = setup
    fc = FlowConstraint(tok, schema, max_new_tokens=8, grammar=grammar)
    scores = fc(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, len(tok)))
    allowed = {fc.g.tokens[i] for i in torch.isfinite(scores[0]).nonzero().flatten().tolist()}
    assert "CheckpointLoaderSimple" in allowed and tok.eos_token not in allowed and fc.n_dead_ends == 0


def test_sampling_with_a_random_model_is_always_valid_and_without_almost_never(setup, tiny_params):
    torch.set_flush_denormal(True)  # random fp32 weights: denormals slow CPU sampling 10-100x
    tok, schema, grammar = setup
    model = build_tiny_model(tiny_params.policy, len(tok), seed=5).eval()
    prompts = [f"a {w} at dawn" for w in ("fox", "castle", "robot", "cat")] * 4
    cfg = SamplingConfig(max_new_tokens=130, batch_size=16, seed=2)
    fc = FlowConstraint(tok, schema, max_new_tokens=cfg.max_new_tokens, grammar=grammar)
    constrained = sample_flows(model, tok, prompts, cfg, logits_processor=[fc])
    assert all(c.finished for c in constrained)
    assert [is_valid(c.text) for c in constrained] == [True] * 16, [c.text for c in constrained if not is_valid(c.text)]
    plain = sample_flows(model, tok, prompts, SamplingConfig(max_new_tokens=40, batch_size=16, seed=2))
    assert sum(is_valid(c.text) for c in plain) <= 1


def test_switch_builds_the_processor_only_when_on(setup, tiny_params):
    tok, schema, _ = setup
    assert constraint_processors(tiny_params.policy.model_copy(update={"constrained": False}), tok) == []
    (proc,) = constraint_processors(tiny_params.policy.model_copy(update={"constrained": True}), tok, 50)
    assert isinstance(proc, FlowConstraint) and proc.max_new_tokens == 50
    assert "SaveImage" in {
        r.form for r in proc.g.classes.values()
    }  # class types found from the tokenizer's flow tokens


def test_a_tokenizer_without_flow_tokens_warns_and_stays_unconstrained(base_tokenizer, tiny_params):
    base_tokenizer.add_tokens(["<|KSampler|>"])
    with pytest.warns(UserWarning, match="constrained decoding is off"):
        assert constraint_processors(tiny_params.policy.model_copy(update={"constrained": True}), base_tokenizer) == []


def test_the_prompt_goes_to_the_positive_and_never_to_the_negative(fc):
    head = (
        CKPT
        + "\nCLIPTextEncode clip=@1.1 text=<negative>\nCLIPTextEncode clip=@1.1 text=<prompt>\nEmptyLatentImage width=512 height=512 batch_size=1\n"
    )
    positive = allowed_after(fc, head + "KSampler model=@1 positive=")
    negative = allowed_after(fc, head + "KSampler model=@1 negative=")
    assert "@3" in positive and "@2" not in positive  # line 3 holds the prompt
    assert "@2" in negative and "@3" not in negative


DONE = (
    CKPT
    + "\nEmptyLatentImage width=512 height=512 batch_size=1\n"
    + SAMPLER.format(c=3, n=4)
    + "VAEDecode samples=@5 vae=@1.2\nSaveImage images=@6\n"
)


def test_an_image_is_saved_once_and_a_latent_decoded_once(fc, monkeypatch):
    """A second SaveImage (or VAEDecode) of the same image (latent) duplicates the first: not offered."""
    monkeypatch.setattr(fc.g, "max_per_flow", {})  # no training flow decodes twice; here the rule for flows that would
    assert "SaveImage" not in allowed_after(fc, DONE)  # the only image is saved already
    assert allowed_after(fc, DONE + "VAEDecode samples=") == {"@2"}  # the sampled latent @5 is decoded already
    second = DONE + "VAEDecode samples=@2 vae=@1.2\nSaveImage images="
    assert allowed_after(fc, second) == {"@8"}  # the new image, not @6 again


def test_finishing_consumes_an_orphan_instead_of_stopping(fc):
    """Near the budget's end, a complete flow with a dangling loader is finished by a line that uses it."""
    orphan = DONE + "UpscaleModelLoader model_name=4x-UltraSharp.pth\n"
    assert "<EOS>" not in allowed_after(fc, orphan)
    row = fc._new_row()
    fc.feed(row, orphan)
    cost = fc._cost(row)
    assert 0 < cost < math.inf  # the consumer and an output node after it are counted
    assert allowed_after(fc, orphan, budget=cost + 2) == {"ImageUpscaleWithModel"}
    assert allowed_after(fc, orphan + "ImageUpscaleWithModel image=@6 upscale_model=", budget=30) == {"@8"}
    # with no budget left for the consumer, the flow may stop as it is
    assert "<EOS>" in allowed_after(fc, orphan, budget=3)


def test_steps_capped_for_a_few_step_checkpoint(fc):
    lightning = [
        c for c in fc.g.classes["CheckpointLoaderSimple"].vocab["ckpt_name"] if "ightning" in c or "turbo" in c.lower()
    ]
    assert lightning, "the base flows name a Turbo or Lightning checkpoint"
    head = f"CheckpointLoaderSimple ckpt_name={lightning[0]}\nEmptyLatentImage width=512 height=512 batch_size=1\n"
    steps = allowed_after(fc, head + SAMPLER.format(c=3, n=4).split("steps=")[0] + "steps=")
    assert "8" in steps and "2" in steps and not {"25", "30", "40"} & steps
    cfg = allowed_after(fc, head + SAMPLER.format(c=3, n=4).replace("steps=20", "steps=8").split("cfg=")[0] + "cfg=")
    assert {"1", "2"} <= {c[0] for c in cfg} and not {"5", "7", "8"} & {c[0] for c in cfg}  # Lightning/Turbo: CFG <= 3
    advanced = (
        head
        + SAMPLER.format(c=3, n=4).split("KSampler")[0]
        + "KSamplerAdvanced latent_image=@2 model=@1 negative=@4 positive=@3 add_noise=enable steps="
    )
    assert allowed_after(fc, advanced)  # never a dead end, even where the field's training range starts above the cap
    for cfg in ("0", "1", "2", "2.5"):
        assert allowed_after(fc, advanced + f"8 cfg={cfg}"), cfg
    free = allowed_after(
        fc, DONE.split("KSampler")[0] + "KSampler model=@1 positive=@3 negative=@4 latent_image=@2 steps="
    )
    assert {"25", "30"} & free or "3" in free


def _value_choices(fc: FlowConstraint, text: str) -> list[str]:
    """The whole values the constraint offers for the input whose value starts after `text`."""
    row = fc._new_row()
    fc.feed(row, text)
    return [w for part in fc.allowed_key(row, math.inf) if part[0] == "form" for w in part[1]]


def test_checkpoints_and_loras_keep_to_one_architecture(fc):
    from flowrl.encoding.grammar import file_group

    first = _value_choices(fc, "CheckpointLoaderSimple ckpt_name=")
    assert {file_group("ckpt_name", c) for c in first} >= {"sd15", "sdxl"}  # free at first
    sdxl = next(c for c in first if file_group("ckpt_name", c) == "sdxl")
    loras = _value_choices(fc, f"CheckpointLoaderSimple ckpt_name={sdxl}\nLoraLoader clip=@1.1 model=@1 lora_name=")
    assert loras and {file_group("lora_name", w) for w in loras} <= {"sdxl", None}  # an SD1.5 LoRA does nothing on SDXL
    sd15 = next(c for c in first if file_group("ckpt_name", c) == "sd15")
    loras = _value_choices(fc, f"CheckpointLoaderSimple ckpt_name={sd15}\nLoraLoader clip=@1.1 model=@1 lora_name=")
    assert loras and {file_group("lora_name", w) for w in loras} <= {"sd15", None}


def test_a_line_that_feeds_nothing_yet_comes_first(fc):
    """A link goes to a line nothing uses yet when one of its type is left (left unused, it would be an orphan); CLIP may be shared."""
    head = (
        CKPT + "\nLoraLoader clip=@1.1 model=@1 lora_name=add-detail-xl.safetensors strength_model=1 strength_clip=1\n"
        "EmptyLatentImage width=1024 height=1024 batch_size=1\nCLIPTextEncode clip=@1.1 text=<prompt>\n"
        "CLIPTextEncode clip=@1.1 text=<negative>\n"
    )
    assert allowed_after(fc, head + "KSampler model=") == {"@2"}  # the LoRA, not the checkpoint it patches
    assert {"@1", "@2"} <= allowed_after(
        fc, head + "CLIPTextEncode clip="
    )  # (a refiner's second encoder shares its CLIP)
    sampled = (
        head
        + "KSampler model=@2 positive=@4 negative=@5 latent_image=@3 steps=20 cfg=7 sampler_name=euler scheduler=normal denoise=1\n"
    )
    assert {"@1", "@2"} <= allowed_after(
        fc, sampled + "KSampler model="
    )  # every model is used: any of them (no dead end)


def test_the_refiner_model_takes_the_refiners_conditioning_and_a_base_model_the_bases(fc):
    refiner = "CheckpointLoaderSimple ckpt_name=sd_xl_refiner_1.0.safetensors"
    encoders = (
        "CLIPTextEncode clip=@1.1 text=<prompt>\nCLIPTextEncode clip=@1.1 text=<negative>\n"
        "CLIPTextEncodeSDXLRefiner clip=@2.1 ascore=6 width=1024 height=1024 text=<prompt>\n"
        "CLIPTextEncodeSDXLRefiner clip=@2.1 ascore=2.5 width=1024 height=1024 text=<negative>\n"
        "EmptyLatentImage width=1024 height=1024 batch_size=1\n"
    )
    head = f"{CKPT}\n{refiner}\n{encoders}"
    assert allowed_after(fc, head + "KSampler model=@1 positive=") == {"@3"}
    assert allowed_after(fc, head + "KSampler model=@2 positive=") == {"@5"}
    assert allowed_after(fc, head + "KSampler model=@2 positive=@5 negative=") == {"@6"}
    patched = head + "FreeU_V2 model=@2 b1=1.3 b2=1.4 s1=0.9 s2=0.2\n"  # a patch of the refiner is the refiner
    assert allowed_after(fc, patched + "KSampler model=@8 positive=") == {"@5"}
    conditioning_first = allowed_after(fc, head + "KSampler positive=@5 model=")
    assert "@2" in conditioning_first and "@1" not in conditioning_first
    flow = head + (
        "KSamplerAdvanced model=@1 positive=@3 negative=@4 latent_image=@7 add_noise=enable steps=25 cfg=7 sampler_name=euler "
        "scheduler=normal start_at_step=0 end_at_step=20 return_with_leftover_noise=enable\n"
        "KSamplerAdvanced model=@2 positive=@5 negative=@6 latent_image=@8 add_noise=disable steps=25 cfg=7 sampler_name=euler "
        "scheduler=normal start_at_step=20 end_at_step=10000 return_with_leftover_noise=disable\n"
        "VAEDecode samples=@9 vae=@2.2\nSaveImage images=@10"
    )
    assert check_flow_text(flow).usable  # the flow these choices lead to runs


def test_every_base_flow_parses_under_every_rule(fc):
    """No rule refuses a flow the policy learns from: each narrows only what no base flow does (CLIP links stay shared)."""
    from flowrl.encoding.grammar import ConstraintError
    from flowrl.encoding.policy_view import policy_text

    refused = []
    for name, graph in load_base_flows():
        try:
            fc.feed(fc._new_row(), policy_text(graph))
        except ConstraintError as exc:
            refused.append(f"{name}: {exc}")
    assert not refused, refused


def test_no_class_more_often_than_in_any_training_flow(fc, setup):
    _, schema, _ = setup
    assert schema.classes["EmptyLatentImage"].max_per_graph == 1 == fc.g.max_per_flow["EmptyLatentImage"]
    head = CKPT + "\nEmptyLatentImage width=512 height=512 batch_size=1\n"
    assert "EmptyLatentImage" in allowed_after(fc, CKPT + "\n") and "EmptyLatentImage" not in allowed_after(fc, head)


def test_a_second_checkpoint_is_a_refiner_the_first_never_and_no_file_is_loaded_twice(fc):
    seconds = allowed_after(fc, CKPT + "\nCheckpointLoaderSimple ckpt_name=")
    assert seconds and all("refiner" in t for t in seconds)
    refiner = "CheckpointLoaderSimple ckpt_name=sd_xl_refiner_1.0.safetensors\n"
    bases = allowed_after(fc, refiner + "CheckpointLoaderSimple ckpt_name=")  # the base after the refiner
    assert bases and not any("refiner" in t for t in bases)
    assert "CheckpointLoaderSimple" not in allowed_after(
        fc, CKPT + "\n" + refiner
    )  # no third: no training flow has one


def test_a_user_without_a_refiner_gets_no_second_checkpoint(setup):
    tok, schema, _ = setup
    no_refiner = copy.deepcopy(schema)
    vocab = no_refiner.classes["CheckpointLoaderSimple"].fields["ckpt_name"].vocab
    for name in [n for n in vocab if "refiner" in n]:
        del vocab[name]
    fc = FlowConstraint(tok, no_refiner)
    assert "CheckpointLoaderSimple" in allowed_after(fc, "") and "CheckpointLoaderSimple" not in allowed_after(
        fc, CKPT + "\n"
    )
    # ... nor the refiner's text encoder, whose conditioning fits only the refiner
    assert "CLIPTextEncodeSDXLRefiner" not in allowed_after(fc, CKPT + "\n")


def test_the_refiners_text_encoder_only_after_the_refiner(fc):
    refiner = "CheckpointLoaderSimple ckpt_name=sd_xl_refiner_1.0.safetensors\n"
    assert "CLIPTextEncodeSDXLRefiner" not in allowed_after(fc, CKPT + "\n")
    assert "CLIPTextEncodeSDXLRefiner" in allowed_after(fc, CKPT + "\n" + refiner)
