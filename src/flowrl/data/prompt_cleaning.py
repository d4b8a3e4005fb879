"""Prompt cleaning: normalisation, length bounds, a conservative safety filter, de-duplication, split.

The rules follow ../shared/data/civitai/README.md ("Cleaning and filtering"): CivitAI syntax
(`<lora:...>` tags, `(word:1.2)` weights, `BREAK`, `\\(` escapes) is kept as written.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

# Zero-width and bidi-control characters that are not in Unicode category "Cc" but still invisible.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\u00ad]")
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?")  # emphasis weights such as (word:1.2) or <lora:x:0.8>
_WORD = re.compile(r"[a-z0-9]+")

# Whole-word, case-insensitive. Conservative: a prompt mentioning any of these is dropped.
SAFETY_TERMS: dict[str, tuple[str, ...]] = {
    "sexual": (
        "nsfw",
        "nude",
        "nudes",
        "nudity",
        "naked",
        "sex",
        "sexy",
        "sexual",
        "porn",
        "porno",
        "pornographic",
        "erotic",
        "erotica",
        "hentai",
        "breast",
        "breasts",
        "boobs",
        "nipple",
        "nipples",
        "lingerie",
        "bikini",
        "seductive",
        "topless",
        "bottomless",
        "underwear",
        "panties",
        "thong",
        "cleavage",
        "genitals",
        "penis",
        "vagina",
        "pussy",
        "ahegao",
        "orgasm",
        "masturbation",
        "bdsm",
        "bondage",
        "fetish",
        "spread legs",
        "undressing",
        "see-through",
        "stripper",
    ),
    "minors": (
        "child",
        "children",
        "kid",
        "kids",
        "teen",
        "teens",
        "teenage",
        "teenager",
        "schoolgirl",
        "schoolboy",
        "loli",
        "lolita",
        "shota",
        "toddler",
        "underage",
        "preteen",
        "little girl",
        "little boy",
    ),
    "gore": (
        "gore",
        "gory",
        "blood",
        "bloody",
        "corpse",
        "corpses",
        "torture",
        "suicide",
        "decapitated",
        "decapitation",
        "dismembered",
        "mutilated",
        "mutilation",
        "disembowel",
    ),
    "hate": ("nazi", "nazis", "swastika", "kkk", "white power", "heil hitler", "white supremacy"),
}
_SAFETY = {
    reason: re.compile(r"(?<![a-z0-9])(?:" + "|".join(re.escape(t) for t in terms) + r")(?![a-z0-9])", re.IGNORECASE)
    for reason, terms in SAFETY_TERMS.items()
}
# Stated ages under 20 ("12 years old", "15yo", "16-year-old").
_MINOR_AGE = re.compile(
    r"(?<![0-9])(?:[1-9]|1[0-9])\s*-?\s*(?:yo|y/o|years?[\s-]*old|year-old)(?![a-z])", re.IGNORECASE
)


def normalize_text(text: str) -> str:
    """NFC, drop control and zero-width characters, collapse whitespace, strip spaces and commas.

    >>> normalize_text("  a\\u200b  cat,\\n\\tin  snow , ")
    'a cat, in snow'
    """
    text = unicodedata.normalize("NFC", text)
    text = _INVISIBLE.sub("", text)
    text = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")
    return " ".join(text.split()).strip(" ,")


def dedupe_key(text: str) -> str:
    """Order-insensitive match key: lower-case alphanumeric words, emphasis weights removed.

    >>> dedupe_key("(Red Cat:1.2), snow") == dedupe_key("snow, red cat")
    True
    """
    return " ".join(sorted(_WORD.findall(_WEIGHT.sub(" ", text.lower()))))


def prompt_id(text: str) -> str:
    """Stable id of a prompt: `p-` and 12 hex digits of the SHA-1 of its match key."""
    return "p-" + hashlib.sha1(dedupe_key(text).encode("utf-8")).hexdigest()[:12]


def unsafe_reason(text: str) -> str | None:
    """The safety category a prompt falls in ('sexual', 'minors', 'gore', 'hate'), or None if it passes."""
    for reason, pattern in _SAFETY.items():
        if pattern.search(text):
            return reason
    if _MINOR_AGE.search(text):
        return "minors"
    return None


@dataclass
class CleanResult:
    """Rows that passed, and how many were dropped for each reason."""

    rows: list[dict]
    n_in: int
    dropped: Counter = field(default_factory=Counter)


def clean_prompts(rows: list[dict], min_chars: int, max_chars: int) -> CleanResult:
    """Normalise `prompt` (and `negative_prompt`), then drop short, long, unsafe and duplicate rows.

    Args:
        rows: dicts with at least "prompt"; other fields are kept.
        min_chars, max_chars: bounds on the normalised prompt's length.
    Returns:
        CleanResult with the first occurrence of each distinct prompt, in input order.
    """
    result = CleanResult(rows=[], n_in=len(rows))
    seen: set[str] = set()
    for row in rows:
        prompt = normalize_text(row["prompt"])
        negative = row.get("negative_prompt")
        negative = normalize_text(negative) or None if isinstance(negative, str) else None
        if len(prompt) < min_chars:
            result.dropped["too_short"] += 1
            continue
        if len(prompt) > max_chars:
            result.dropped["too_long"] += 1
            continue
        reason = unsafe_reason(prompt)
        if reason:
            result.dropped[f"unsafe_{reason}"] += 1
            continue
        key = dedupe_key(prompt)
        if not key or key in seen:
            result.dropped["duplicate"] += 1
            continue
        seen.add(key)
        result.rows.append({**row, "prompt": prompt, "negative_prompt": negative})
    return result


def split_holdout(rows: list[dict], n_holdout: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Seeded shuffle, then (train, holdout) with `n_holdout` rows held out; the two never overlap."""
    shuffled = random.Random(seed).sample(rows, len(rows))
    return shuffled[n_holdout:], shuffled[:n_holdout]
