"""The shipped library of human-style text-to-image base flows (API-format JSON, one per file)."""

from __future__ import annotations

import json
from pathlib import Path

LIBRARY_DIR = Path(__file__).parent


def load_base_flows() -> list[tuple[str, dict]]:
    """(name, API graph) for every shipped base flow, sorted by name; the positive prompt is PROMPT_PLACEHOLDER."""
    return [(path.stem, json.loads(path.read_text())) for path in sorted(LIBRARY_DIR.glob("*.json"))]
