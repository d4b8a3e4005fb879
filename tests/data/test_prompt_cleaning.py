"""Cleaning rules: normalisation, length bounds, safety filter, de-duplication, split."""

import pytest

from flowrl.data.prompt_cleaning import (
    clean_prompts,
    dedupe_key,
    normalize_text,
    prompt_id,
    split_holdout,
    unsafe_reason,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("e\u0301clair on a plate", "\u00e9clair on a plate"),  # NFC
        ("red\u200b cat\u200d in\ufeff snow", "red cat in snow"),  # zero-width
        ("cat\x00 in\x07 snow", "cat in snow"),  # control characters
        ("  cat,\n\n\tin   snow  ", "cat, in snow"),  # whitespace
        (", , cat in snow ,", "cat in snow"),  # leading/trailing commas
        (
            "(cat:1.2), <lora:add_detail:0.8>, \\(snow\\) BREAK sky",
            "(cat:1.2), <lora:add_detail:0.8>, \\(snow\\) BREAK sky",
        ),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_dedupe_key_ignores_case_weights_order_and_punctuation():
    assert dedupe_key("(Red Cat:1.3), snow!") == dedupe_key("snow, red cat")
    assert dedupe_key("red cat, snow") != dedupe_key("red cat, rain")
    assert prompt_id("(Red Cat:1.3), snow") == prompt_id("snow, red cat")


@pytest.mark.parametrize(
    "text, reason",
    [
        ("a nude woman on a beach", "sexual"),
        ("NSFW, portrait", "sexual"),
        ("a schoolgirl in a park", "minors"),
        ("portrait of a 15 year old", "minors"),
        ("16yo girl, smiling", "minors"),
        ("zombie covered in blood", "gore"),
        ("nazi officer portrait", "hate"),
    ],
)
def test_unsafe_prompts_flagged(text, reason):
    assert unsafe_reason(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        "essex countryside at dusk",
        "bloodhound dog in a field",
        "kidney beans in a bowl",
        "portrait of a 25 year old man",
        "sussex cottage",
    ],
)
def test_whole_words_only(text):
    assert unsafe_reason(text) is None


def test_clean_prompts_counts_each_reason():
    rows = [
        {"prompt": "a red fox in the snow, 85mm"},
        {"prompt": "  A RED fox, in the snow, (85mm:1.2) "},  # duplicate after normalisation
        {"prompt": "short"},
        {"prompt": "x" * 60},
        {"prompt": "nude model in a studio"},
        {"prompt": "castle on a hill at dawn", "negative_prompt": "  blurry,\n lowres "},
    ]
    result = clean_prompts(rows, min_chars=10, max_chars=50)
    assert [r["prompt"] for r in result.rows] == ["a red fox in the snow, 85mm", "castle on a hill at dawn"]
    assert result.rows[1]["negative_prompt"] == "blurry, lowres"
    assert result.rows[0]["negative_prompt"] is None
    assert result.n_in == 6
    assert result.dropped == {"duplicate": 1, "too_short": 1, "too_long": 1, "unsafe_sexual": 1}


def test_split_disjoint_sized_and_seeded():
    rows = [{"prompt": f"prompt number {i}"} for i in range(100)]
    train, holdout = split_holdout(rows, 20, seed=5)
    assert len(train) == 80 and len(holdout) == 20
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in holdout}
    assert (train, holdout) == split_holdout(rows, 20, seed=5)
    assert holdout != split_holdout(rows, 20, seed=6)[1]
