"""Flow prefixes cut at component boundaries (a component = one line of the encoded flow).

The prefix models (paper eq. 2) learn the full flow's score from `f[1:j]`, its first j components.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from flowrl.encoding.codec import split_components


def split_flow(text: str) -> list[str]:
    """Components of an encoded flow, as the codec splits them (one line per node)."""
    return split_components(text)


def component_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character span in `text` of each component, in order.

    >>> component_spans("a 1\\nb 2\\n")
    [(0, 4), (4, 8)]
    """
    spans, pos = [], 0
    for comp in split_flow(text):
        start = text.find(comp, pos)
        if start < 0:  # the splitter normalised the line; fall back to the next line break
            start = pos
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end + 1
        else:
            end = start + len(comp)
            if text.startswith("\n", end):  # a component owns its line break
                end += 1
        spans.append((start, end))
        pos = end
    return spans


def all_prefixes(text: str) -> list[str]:
    """Every prefix f[1:j], j = 1..J, as text (the last one is the whole flow up to its last component)."""
    spans = component_spans(text)
    return [text[:end] for _, end in spans] or [text]


def random_prefixes(text: str, k: int, rng: random.Random) -> list[str]:
    """`k` prefixes of `text` cut at random component boundaries (drawn with replacement)."""
    prefixes = all_prefixes(text)
    return [rng.choice(prefixes) for _ in range(k)]


def prefix_rows(rows: Sequence[dict], k: int, seed: int) -> list[dict]:
    """Triplet rows -> `k` rows each whose "flow" is a random prefix and whose score is the full flow's."""
    rng = random.Random(seed)
    return [{**row, "flow": prefix} for row in rows for prefix in random_prefixes(row["flow"], k, rng)]
