"""What a stage may read of params: its declared keys only, with the active profile applied.

Two uses of one declaration (`Stage.params` in flowrl.pipeline.stages):
- `write_resolved` (the `params` stage, `python -m flowrl.pipeline.stage_params`) writes data/params/<stage>.yaml
  holding the resolved values of the keys each stage declares. DVC tracks those files instead of
  params.yaml, so editing a profile that is not active, or a key a stage does not read, reruns nothing.
- `declared_view` is what a stage function receives when run by the pipeline: reading an undeclared
  key raises, so a stage cannot depend on a value DVC does not track for it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from flowrl.errors import FlowRLError, exit_code
from flowrl.io import write_text
from flowrl.params.model import Params, load_params
from flowrl.pipeline.stages import STAGES, ResolvedParams, Stage


class UndeclaredParamError(FlowRLError):
    """A stage read a params key that its declaration in flowrl/pipeline/stages.py does not list."""


def _refuse(stage: str, key: str) -> UndeclaredParamError:
    return UndeclaredParamError(
        f"stage '{stage}' reads params {key}, which its declaration does not list; "
        f"add {key!r} to its params in src/flowrl/pipeline/stages.py (then run `flowrl pipeline dvc-yaml`)"
    )


class _Undeclared:
    """Stands in for a section or value the stage did not declare: any use raises."""

    def __init__(self, stage: str, key: str):
        object.__setattr__(self, "_error", _refuse(stage, key))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._error

    def _raise(self, *args, **kwargs):
        raise self._error

    __str__ = __format__ = __bool__ = __int__ = __float__ = __index__ = __iter__ = __len__ = __eq__ = __hash__ = _raise
    __lt__ = __le__ = __gt__ = __ge__ = __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _raise

    def __repr__(self) -> str:
        return f"<undeclared: {self._error}>"


class _Partial:
    """A section of which the stage declared only some keys (`prompts.min_chars`)."""

    def __init__(self, stage: str, name: str, section: Any, keys: set[str]):
        object.__setattr__(self, "_parts", (stage, name, section, keys))

    def __getattr__(self, key: str) -> Any:
        stage, name, section, keys = self._parts
        if key in keys or key.startswith("__"):
            return getattr(section, key)
        raise _refuse(stage, f"{name}.{key}")


def declared_view(params: Params, stage: Stage) -> Params:
    """`params` with every key `stage` does not declare replaced by a stand-in that raises when used."""
    partial: dict[str, set[str]] = {}
    for key in stage.params:
        name, _, sub = key.partition(".")
        if sub:
            partial.setdefault(name, set()).add(sub)
    values: dict[str, Any] = {}
    for name in Params.model_fields:
        value = getattr(params, name)
        if name in stage.params:
            values[name] = value
        elif name in partial:
            values[name] = _Partial(stage.name, name, value, partial[name])
        else:
            values[name] = _Undeclared(stage.name, name)
    return Params.model_construct(**values)


def resolved(params: Params, stage: Stage) -> dict[str, Any]:
    """The values of the keys `stage` declares, as plain YAML-able data (nested like params.yaml)."""
    dumped = params.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key in stage.params:
        name, _, sub = key.partition(".")
        if sub:
            out.setdefault(name, {})[sub] = dumped[name][sub]
        else:
            out[name] = dumped[name]
    return out


def write_resolved(params: Params, root: Path) -> list[Path]:
    """Write data/params/<stage>.yaml for every stage; return the paths."""
    paths = []
    for stage in STAGES.values():
        text = "# written by the `params` stage from params.yaml (active profile applied); do not edit\n"
        paths.append(
            write_text(
                root / ResolvedParams.of(stage.name), text + yaml.safe_dump(resolved(params, stage), sort_keys=True)
            )
        )
    return paths


def _main(root: str = ".") -> list[Path]:
    return write_resolved(load_params(Path(root) / "params.yaml"), Path(root))


if __name__ == "__main__":
    sys.exit(exit_code(_main))
