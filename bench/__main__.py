"""Run every bench module: `python -m bench` (or `python -m bench encoding` for some of them)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path


def main(names: list[str]) -> dict[str, dict]:
    """Import each bench module (all when `names` is empty), call its main(), return their figures."""
    found = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))
    results = {}
    for name in names or found:
        print(f"== bench.{name}")
        results[name] = importlib.import_module(f"bench.{name}").main()
    return results


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
