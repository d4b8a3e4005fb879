"""Prompt file readers: JSON Lines, CSV and plain text, with malformed lines reported by number.

Shapes accepted: JSONL rows with "prompt" (or "text") and optional "negative_prompt" (this covers
../shared/data/civitai/prompts.jsonl and generations.jsonl); CSV with a header holding a
prompt or text column (and optionally negative_prompt); plain text, one prompt per line.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flowrl.errors import FlowRLError

log = logging.getLogger(__name__)

PROMPT_FIELDS = ("prompt", "text")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)
TEXT_SUFFIXES = (".txt",)


class PromptSourceError(FlowRLError):
    """A prompt file is missing, empty, of an unknown kind, or (strict mode) has a malformed line."""


@dataclass
class SourceResult:
    """Rows read from a file, and the (line number, reason) of each malformed line skipped."""

    rows: list[dict]
    malformed: list[tuple[int, str]] = field(default_factory=list)


def _decoded_lines(path: Path, bad: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line; undecodable lines are recorded in `bad` and yielded empty."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.append((lineno, f"not UTF-8 ({exc.reason} at byte {exc.start})"))
                yield lineno, "\n"


def _row_from_record(record: object, source: str) -> tuple[dict | None, str | None]:
    """A prompt row from a parsed JSON/CSV record, or (None, why it is malformed)."""
    if not isinstance(record, dict):
        return None, f"expected an object, got {type(record).__name__}"
    name = next((f for f in PROMPT_FIELDS if f in record and record[f] not in (None, "")), None)
    if name is None:
        return None, "no 'prompt' or 'text' field"
    prompt = record[name]
    if not isinstance(prompt, str):
        return None, f"'{name}' is {type(prompt).__name__}, expected a string"
    negative = record.get("negative_prompt")
    if negative == "":
        negative = None
    if negative is not None and not isinstance(negative, str):
        return None, f"'negative_prompt' is {type(negative).__name__}, expected a string or null"
    src = record.get("source")
    return {
        "prompt": prompt,
        "negative_prompt": negative,
        "source": src if isinstance(src, str) and src else source,
    }, None


def _read_jsonl(path: Path, bad: list[tuple[int, str]]) -> list[dict]:
    rows = []
    for lineno, line in _decoded_lines(path, bad):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append((lineno, f"not valid JSON ({exc.msg})"))
            continue
        row, why = _row_from_record(record, f"{path.name}:{lineno}")
        if row is None:
            bad.append((lineno, why))
        else:
            rows.append(row)
    return rows


def _read_csv(path: Path, bad: list[tuple[int, str]]) -> list[dict]:
    lines = _decoded_lines(path, bad)
    reader = csv.DictReader((line for _, line in lines))
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    if not any(c in PROMPT_FIELDS for c in columns):
        raise PromptSourceError(f"{path}: the CSV header {reader.fieldnames} has no 'prompt' or 'text' column; add one")
    reader.fieldnames = columns
    rows = []
    for record in reader:
        lineno = reader.line_num
        if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
            continue
        if None in record:  # more cells than header columns
            bad.append((lineno, f"{len(columns) + len(record[None])} cells for {len(columns)} header columns"))
            continue
        row, why = _row_from_record(record, f"{path.name}:{lineno}")
        if row is None:
            bad.append((lineno, why))
        else:
            rows.append(row)
    return rows


def _read_text(path: Path, bad: list[tuple[int, str]]) -> list[dict]:
    return [
        {"prompt": line.strip(), "negative_prompt": None, "source": f"{path.name}:{lineno}"}
        for lineno, line in _decoded_lines(path, bad)
        if line.strip()
    ]


def read_prompt_file(path: str | Path, strict: bool = False) -> SourceResult:
    """Read prompts from a .jsonl/.json, .csv or .txt file.

    Args:
        path: the file; its suffix picks the reader.
        strict: raise on the first malformed line instead of skipping it.
    Returns:
        SourceResult: rows {"prompt", "negative_prompt", "source"} and the malformed lines skipped.
    Raises:
        PromptSourceError: missing or empty file, unknown suffix, or a malformed line under strict.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptSourceError(
            f"{path}: prompt file not found; set prompts.path to an existing .jsonl, .csv or .txt file"
        )
    suffix = path.suffix.lower()
    readers = {
        **dict.fromkeys(JSONL_SUFFIXES, _read_jsonl),
        **dict.fromkeys(CSV_SUFFIXES, _read_csv),
        **dict.fromkeys(TEXT_SUFFIXES, _read_text),
    }
    if suffix not in readers:
        raise PromptSourceError(f"{path}: unknown prompt file kind '{suffix}'; use .jsonl, .csv or .txt")
    bad: list[tuple[int, str]] = []
    rows = readers[suffix](path, bad)
    bad.sort()
    if bad and strict:
        lineno, why = bad[0]
        raise PromptSourceError(
            f"{path}:{lineno}: {why}; fix or remove the line ({len(bad)} malformed in all), "
            "or set prompts.strict: false to skip malformed lines"
        )
    if bad:
        shown = ", ".join(str(n) for n, _ in bad[:10]) + (" ..." if len(bad) > 10 else "")
        log.warning("%s: skipped %d malformed line(s): %s (first: %s)", path, len(bad), shown, bad[0][1])
    if not rows:
        raise PromptSourceError(
            f"{path}: no prompts found ({len(bad)} malformed lines); give a file with at least one prompt"
        )
    return SourceResult(rows=rows, malformed=bad)
