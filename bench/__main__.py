"""Run every bench module: `python -m bench` (or `python -m bench encoding` for some of them).

Each module's figures go to bench/results/<name>.json; docs/benchmarks.md is then rebuilt from all
results present (bench/_report.py), also when only some benches ran or one of them failed.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import traceback
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def discover() -> list[str]:
    """Bench module names: every module of this package whose name does not start with '_'."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))


def _cpu_model() -> str:
    try:
        line = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()
    return line.partition(":")[2].strip()


def commit() -> str:
    """The commit measured: HEAD, with `+dirty` when code differs from it (bench results and docs aside)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=RESULTS.parents[1], capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", ".", ":!bench/results", ":!docs")
    return (git("rev-parse", "HEAD") or "unknown") + ("+dirty" if dirty else "")


def machine() -> dict[str, str | int | float]:
    """Where and on what a figure was measured: date, commit, host CPU count and model, torch threads setting, load at the start."""
    return {
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "cpus": os.cpu_count() or 0,
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main(names: list[str]) -> dict[str, dict]:
    """Import each bench module (all when `names` is empty), call its main(), save its figures, rebuild the report."""
    from bench._report import build_report

    found = discover()
    unknown = sorted(set(names) - set(found))
    if unknown:
        raise SystemExit(f"unknown bench {', '.join(unknown)}; benches are: {', '.join(found)}")
    results, failed = {}, []
    for name in names or found:
        print(f"== bench.{name}")
        measured = machine()
        try:
            results[name] = importlib.import_module(f"bench.{name}").main()
        except Exception:  # noqa: BLE001 - one broken bench must not stop the others or the report
            traceback.print_exc()
            failed.append(name)
            continue
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{name}.json").write_text(
            json.dumps({"measured": measured, "figures": results[name]}, indent=2) + "\n"
        )
    build_report()
    print("docs/benchmarks.md rebuilt from bench/results/")
    if failed:
        raise SystemExit(f"bench(es) failed: {', '.join(failed)} (their earlier results, if any, are kept)")
    return results


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
