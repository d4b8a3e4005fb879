"""What a request to the policy may hold: its prompts (in the shapes MLflow's serving hands over) and the
per-request sampling parameters, checked with one clear error each (flowrl.policy.inference answers them)."""

from __future__ import annotations

import math
import re
import sys
from typing import Any

from flowrl.errors import FlowRLError

PROMPT_COLUMN = "prompt"
# Ranges of the per-request sampling parameters: beyond them sampling overflows or seeds wrap.
MAX_GAMMA = 100.0
MAX_TEMPERATURE = 100.0
MAX_SEED = 2**32 - 1  # every RNG the sampler may touch (torch, numpy, random) takes it
PARAMS = ("gamma", "seed", "temperature", "object_info")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# the request shapes the served model takes (tests/tracking/test_bad_requests.py sends each of them)
SEND = 'send {"inputs": ["a red fox", ...]}, {"inputs": {"prompt": [...]}} or {"dataframe_records": [{"prompt": "a red fox"}]}'


class PolicyInputError(FlowRLError):
    """A request the policy cannot answer: no prompts, an empty or non-string prompt, a bad parameter."""


def read_prompts(data: Any, max_prompts: int | None = None, max_chars: int | None = None) -> list[str]:
    """The prompts of a request: a `prompt` column (DataFrame or dict), a list of strings, or one string.

    Args:
        data: the request input.
        max_prompts, max_chars: caps on prompts per request and characters per prompt (None: no cap).
    Raises:
        PolicyInputError: no prompts, too many, a non-string, an empty, whitespace-only, over-long or
            not-text (lone surrogate: invalid UTF-8 on the command line) prompt.
    """
    pd = sys.modules.get("pandas")  # a DataFrame or Series can only arrive once pandas is imported (it costs 0.2 s)
    if pd is not None and isinstance(data, pd.DataFrame):
        if PROMPT_COLUMN not in data.columns:
            if len(data.columns) != 1:
                raise PolicyInputError(
                    f"input has columns {list(data.columns)} but no {PROMPT_COLUMN!r} column; {SEND}"
                )
            data = data[data.columns[0]]
        else:
            data = data[PROMPT_COLUMN]
    data = _plain(data)
    if isinstance(data, dict):
        if PROMPT_COLUMN not in data:
            raise PolicyInputError(f"input has keys {sorted(map(str, data))} but no {PROMPT_COLUMN!r}; {SEND}")
        data = _plain(data[PROMPT_COLUMN])
    if isinstance(data, str):
        data = [data]
    if isinstance(data, list):
        data = _rows(data)
    if not isinstance(data, list) or not data:
        got = "an empty list" if data == [] else type(data).__name__
        raise PolicyInputError(f"expected one or more prompt strings, got {got}; {SEND}")
    if max_prompts is not None and len(data) > max_prompts:
        raise PolicyInputError(
            f"{len(data)} prompts in one request, more than the cap of {max_prompts} "
            "(register.max_prompts_per_request); split the request"
        )
    for i, prompt in enumerate(data):
        if prompt is None or (isinstance(prompt, float) and math.isnan(prompt)):  # pandas turns null into NaN
            raise PolicyInputError(f"prompt {i} is missing (null); send a text prompt in every row")
        if not isinstance(prompt, str):
            raise PolicyInputError(
                f"prompt {i} is {type(prompt).__name__} ({prompt!r:.40}), not a string; send text prompts"
            )
        if not prompt.strip():
            raise PolicyInputError(f"prompt {i} is empty or whitespace only; send a description of the image")
        if max_chars is not None and len(prompt) > max_chars:
            raise PolicyInputError(
                f"prompt {i} has {len(prompt)} characters, more than the cap of {max_chars} "
                "(register.max_prompt_chars); shorten it"
            )
        bad = _LONE_SURROGATE.search(prompt)
        if bad:
            raise PolicyInputError(
                f"prompt {i} is not valid text (invalid UTF-8 or a lone surrogate at character {bad.start()}); "
                "send UTF-8 text"
            )
    return data


def _rows(data: list) -> list:
    """A batch as one prompt per row: [["a", "b"]] (one row holding the list) or [["a"], ["b"]] (rows of one) or
    [{"prompt": "a"}, ...] (records) become ["a", "b"]; a row with several values is refused, never cut to its first."""
    if data and all(isinstance(row, list) for row in data):
        if len(data) == 1:
            return data[0]
        if all(len(row) == 1 for row in data):
            return [row[0] for row in data]
        raise PolicyInputError(
            f"row {next(i for i, r in enumerate(data) if len(r) != 1)} holds "
            f"{len(next(r for r in data if len(r) != 1))} values; send one prompt per row: {SEND}"
        )
    if data and all(isinstance(row, dict) for row in data):
        if any(PROMPT_COLUMN not in row for row in data):
            i = next(i for i, r in enumerate(data) if PROMPT_COLUMN not in r)
            raise PolicyInputError(f"record {i} has keys {sorted(map(str, data[i]))} but no {PROMPT_COLUMN!r}; {SEND}")
        return [_plain(row[PROMPT_COLUMN]) for row in data]
    return data


def _plain(value: Any) -> Any:
    """Python lists and scalars for pandas Series and numpy arrays or scalars (MLflow parses request JSON into them)."""
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, (list, str)) else value


def check_sampling_params(
    gamma: Any = None, seed: Any = None, temperature: Any = None
) -> tuple[float | None, int | None, float | None]:
    """Per-request sampling parameters, type- and range-checked (None = the model's default).

    Returns:
        (gamma, seed, temperature) as float, int, float (or None).
    Raises:
        PolicyInputError: a bool, a non-number, a non-integer seed, or a value out of range.
    """

    def number(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PolicyInputError(f"{name} must be a number, got {type(value).__name__} ({value!r:.40})")
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            lower = f"> {low:g}" if low_open else f">= {low:g}"
            shown = f"{value:.15g}" if isinstance(value, float) else str(value)  # 100.0001, not "100"
            raise PolicyInputError(f"{name} must be a finite number {lower} and <= {high:g}, got {shown}")
        return float(value)

    gamma = number("gamma", gamma, 0.0, MAX_GAMMA)
    temperature = number("temperature", temperature, 0.0, MAX_TEMPERATURE, low_open=True)
    if seed is not None:
        if isinstance(seed, float) and seed.is_integer():
            seed = int(seed)  # JSON clients may send 7.0
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise PolicyInputError(f"seed must be a whole number from 0 to {MAX_SEED} (2**32-1), got {seed!r:.40}")
    return gamma, seed, temperature
