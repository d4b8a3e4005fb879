"""Run every bench module: `python -m bench` (or `python -m bench encoding` for some of them)."""

from __future__ import annotations

import importlib
import datetime
import json
import os
import pkgutil
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, str | int]:
    """Where a figure was measured: date, host CPU count, torch threads setting."""
    return {"date": datetime.date.today().isoformat(), "cpus": os.cpu_count() or 0, "machine": platform.machine(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "default")}


def main(names: list[str]) -> dict[str, dict]:
    """Import each bench module (all when `names` is empty), call its main(), return their figures."""
    found = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))
    results = {}
    for name in names or found:
        print(f"== bench.{name}")
        results[name] = importlib.import_module(f"bench.{name}").main()
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps({"measured": machine(), "figures": results[name]}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
