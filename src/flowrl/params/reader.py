"""Reading a params file strictly: size, encoding, YAML syntax, duplicate keys, nesting and integer range.

What the values mean is flowrl.params.model's business; this module only hands it a sane mapping.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml

from flowrl.errors import ConfigError

MAX_PARAMS_BYTES = 1024 * 1024
MAX_PARAMS_DEPTH = 32  # params.yaml nests ~5 levels; deeper is damage, and would exhaust the recursion limit
INT_LIMIT = 2**63 - 1  # no knob needs more; YAML would otherwise hand over arbitrarily large integers


def check_tree(raw: Any, source: str) -> None:
    """Refuse absurd nesting and integers beyond 64 bits anywhere in the raw params, naming the key."""
    stack: list[tuple[Any, tuple]] = [(raw, ())]
    while stack:
        value, path = stack.pop()
        where = ".".join(map(str, path))
        if len(path) > MAX_PARAMS_DEPTH:
            raise ConfigError(
                f"{source}: nested deeper than {MAX_PARAMS_DEPTH} levels under {'.'.join(map(str, path[:3]))}...; "
                "params.yaml has sections of plain settings; fix the file"
            )
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
            raise ConfigError(
                f"{source}: {where} = {value:.3g} is out of range; no setting needs a number beyond 2**63"
            )
        if isinstance(value, dict):
            stack.extend((v, (*path, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(value))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one section "
                    "(the second would silently win); keep one"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_params_file(path: str | Path) -> dict:
    """The raw mapping of a params file, read strictly.

    Raises:
        ConfigError: missing, a directory, over 1 MiB, not UTF-8, not YAML, duplicate keys, nested absurdly, empty,
            or not a mapping; the message names the file and the fix.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; pass the params.yaml file (--params PATH)")
    if not path.exists():
        raise ConfigError(f"{path}: not found; run from the repository root or pass --params PATH")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_PARAMS_BYTES:
        raise ConfigError(
            f"{path}: {len(data) / 2**20:.1f} MiB is too large for a params file; is this the right file?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); save it as UTF-8"
        ) from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())}); fix the file") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a params file; fix the file") from None
    if raw is None:
        raise ConfigError(f"{path}: is empty; restore it (git checkout {path.name}) or give the right --params file")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level is a {type(raw).__name__}, not a mapping of sections "
            "(prompts:, policy:, ...); fix the file"
        )
    return raw
