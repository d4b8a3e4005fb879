"""Prompt features: style families agree with the prompt generator, cues and tags are read."""

from __future__ import annotations

from flowrl.scoring.prompt_features import STYLE_FAMILIES, prompt_features


def test_agrees_with_prompt_generator():
    from flowrl.data import prompt_generator as generator  # it has long landed: no skip

    assert tuple(generator.FAMILIES) == STYLE_FAMILIES
    rows = generator.generate_prompts(300, 17)
    agree = sum(prompt_features(r["prompt"]).family == r["family"] for r in rows) / len(rows)
    assert agree >= 0.85


def test_soft_labels_sum_to_one_and_mix():
    f = prompt_features("cyberpunk city at night, neon, 3d render, octane render")
    assert abs(sum(f.families.values()) - 1) < 1e-9
    top = sorted(f.families, key=f.families.get, reverse=True)[:2]
    assert set(top) == {"scifi_cyberpunk", "render_3d"}


def test_lora_tags_attention_quality_and_cues():
    f = prompt_features(
        'masterpiece, best quality, portrait of a woman, (freckles:1.2), <lora:add_detail:0.7>, text "HELLO"'
    )
    assert f.loras == (("add_detail", 0.7),)
    assert f.attention == (1.2,)
    assert f.quality_tags == 2
    assert f.face > 0.5 and f.text > 0
    assert (
        prompt_features("a mountain valley landscape with a river").landscape
        > prompt_features("a mountain valley landscape with a river").face
    )


def test_real_civitai_prompts(shared_civitai):
    import json

    path = shared_civitai / "prompts.jsonl" if shared_civitai.is_dir() else shared_civitai
    with open(path) as fh:
        prompts = [json.loads(next(fh))["prompt"] for _ in range(200)]
    families = {prompt_features(p).family for p in prompts if p}
    assert len(families) >= 5
