"""Built-in prompt generator: determinism, family coverage and balance, CivitAI syntax."""

import re
from collections import Counter

from flowrl.data.prompt_cleaning import clean_prompts, dedupe_key
from flowrl.data.prompt_generator import FAMILIES, VOCAB, generate_prompts

FAMILY_NAMES = {
    "photo_portrait",
    "photo_landscape",
    "anime",
    "fantasy_illustration",
    "oil_painting",
    "render_3d",
    "scifi_cyberpunk",
    "architecture_interior",
    "cartoon_comic",
    "food_product",
}


def test_same_seed_same_prompts_other_seed_differs():
    assert generate_prompts(200, seed=7) == generate_prompts(200, seed=7)
    assert generate_prompts(200, seed=7) != generate_prompts(200, seed=8)


def test_families_are_the_contract_names_and_balanced():
    assert set(FAMILIES) == FAMILY_NAMES == set(VOCAB)
    rows = generate_prompts(1000, seed=1)
    counts = Counter(r["family"] for r in rows)
    assert set(counts) == FAMILY_NAMES
    assert max(counts.values()) - min(counts.values()) <= 1


def test_prompts_distinct_safe_and_fast_at_full_size():
    rows = generate_prompts(10000, seed=3)
    assert len({dedupe_key(r["prompt"]) for r in rows}) == 10000
    cleaned = clean_prompts(rows, min_chars=10, max_chars=1500)
    assert len(cleaned.rows) == 10000, cleaned.dropped


def test_civitai_syntax_present():
    rows = generate_prompts(500, seed=2)
    prompts = [r["prompt"] for r in rows]
    assert sum(bool(re.search(r"\([^()]+:\d\.\d\)", p)) for p in prompts) > 50
    assert sum(bool(re.search(r"<lora:[\w.-]+:\d(\.\d)?>", p)) for p in prompts) > 50
    assert sum("best quality" in p or "masterpiece" in p for p in prompts) > 50
    negatives = [r["negative_prompt"] for r in rows]
    assert 0 < sum(n is not None for n in negatives) < len(rows)


def test_family_vocabulary_is_distinctive():
    """A family's subjects appear in its own prompts only, so the prompt reveals the family."""
    rows = generate_prompts(300, seed=4)
    for row in rows:
        own = VOCAB[row["family"]].subjects
        assert any(s in row["prompt"] for s in own)


def test_loras_come_from_components_when_present(monkeypatch):
    """With flowrl.comfy.components importable, LoRA tags use its LORAS of a matching style and weight range."""
    import sys
    import types
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Lora:
        name: str
        family: str
        style: str
        weight_min: float
        weight_max: float

    fake = types.ModuleType("flowrl.comfy.components")
    fake.LORAS = [Lora("photo_lora_x", "sd15", "photo", 0.5, 0.6), Lora("anime_lora_y", "sdxl", "anime", 0.9, 1.0)]
    monkeypatch.setitem(sys.modules, "flowrl.comfy.components", fake)
    rows = generate_prompts(400, seed=9)
    tags = [(r["family"], m) for r in rows for m in re.findall(r"<lora:([\w.-]+):([\d.]+)>", r["prompt"])]
    assert tags
    for family, (name, weight) in tags:
        expected = {"photo": "photo_lora_x", "anime": "anime_lora_y"}.get(VOCAB[family].lora_style)
        if expected:
            assert name == expected
            assert (0.5 <= float(weight) <= 0.6) if expected == "photo_lora_x" else (0.9 <= float(weight) <= 1.0)
        else:  # no matching style in the catalog: the built-in fallback stems
            assert name in VOCAB[family].loras
