"""Build docs/benchmarks.md from every bench/results/*.json (not a bench: `python -m bench` skips '_' names).

Each bench module may expose `rows(figures) -> [(measure, value, target, met?)]`; results of a
module without one (or whose rows() no longer fits an older result) get a flattened key/value table.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from bench._common import IMG, REPO, Row

RESULTS = Path(__file__).parent / "results"
DOC = REPO / "docs" / "benchmarks.md"

HEADER = """# Benchmarks

Every figure below comes from a real run of a bench module under `bench/` and is regenerated from
`bench/results/<name>.json` each time benches run. Timing goals live here, never in unit tests.

* `make bench` (= `.venv/bin/python -m bench`) runs every bench module, saves its figures and
  rewrites this page; `python -m bench NAME [NAME ...]` runs only some (the page is still rebuilt
  from all results present); `python -m bench._report` only rebuilds the page.
* Benches that load models read `FLOWRL_BENCH_PROFILE` (default `cpu`; `pipeline` defaults to
  `tiny`) and say in their figures when they fell back to the tiny models.
* On shared CPUs run them one at a time with `OMP_NUM_THREADS=1`: two OpenMP threads on a busy
  2-core machine are many times slower. Each section says where and when it was measured; the
  load average at the start tells how busy the machine was (timings on a loaded machine are noisy
  and only ever too slow).
"""


class ReportError(ValueError):
    """A results file cannot be read into the report."""


def load_results(results_dir: Path = RESULTS) -> dict[str, dict]:
    """name -> {"measured": ..., "figures": ...} for every results/*.json, sorted by name.

    Raises:
        ReportError: a file is not JSON or lacks the "measured"/"figures" objects.
    """
    out = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ReportError(
                f"{path}: not valid JSON ({exc}); rerun `python -m bench {path.stem}` or delete the file"
            ) from None
        if not (
            isinstance(data, dict) and isinstance(data.get("measured"), dict) and isinstance(data.get("figures"), dict)
        ):
            raise ReportError(
                f"{path}: needs the objects 'measured' and 'figures' (as `python -m bench` writes them); "
                f"rerun `python -m bench {path.stem}` or delete the file"
            )
        out[path.stem] = data
    return out


def format_value(value: object) -> str:
    """A figure as table text: floats to 3 significant digits (plain for >= 1000), lists comma-joined."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def flatten(figures: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested figures as (dotted key, value) pairs, in order."""
    out: list[tuple[str, object]] = []
    for key, value in figures.items():
        name = f"{prefix}{key}"
        out += flatten(value, f"{name}.") if isinstance(value, dict) else [(name, value)]
    return out


def bench_rows(name: str, figures: dict) -> list[Row]:
    """The bench module's own rows(figures), else the flattened figures."""
    try:
        module = importlib.import_module(f"bench.{name}")
    except ImportError:
        module = None
    if module is not None and hasattr(module, "rows"):
        try:
            return [tuple(str(c) for c in row) for row in module.rows(figures)]
        except (KeyError, TypeError, ValueError, IndexError):
            pass  # figures of an older version of the bench: show them as they are
    return [(key, format_value(value), "", "") for key, value in flatten(figures)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[Row]) -> str:
    """Markdown table measure | value | target | met?."""
    lines = ["| measure | value | target | met? |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def measured_line(measured: dict, figures: dict) -> str:
    """'Measured <date> on <cpus> x <machine> (<cpu model>), OMP_NUM_THREADS=..., load ..., profile ..., policy ..., commit ...'."""
    parts = [
        f"Measured {measured.get('date', '?')} on {measured.get('cpus', '?')} CPUs, {measured.get('machine', '?')}"
    ]
    if measured.get("cpu_model"):
        parts[0] += f" ({measured['cpu_model']})"
    parts.append(f"OMP_NUM_THREADS={measured.get('omp_num_threads', '?')}")
    if "load_avg_1m" in measured:
        parts.append(f"load average {measured['load_avg_1m']} at the start")
    profile = figures.get("profile", measured.get("profile"))
    parts.append(f"profile `{profile}`" if profile else "no params profile")
    if figures.get("policy"):
        parts.append(f"policy {figures['policy']}")
    parts.append(f"commit `{measured['commit'][:12]}`" if measured.get("commit") else "commit not recorded")
    return ", ".join(parts) + "."


def _summary(name: str) -> str:
    try:
        doc = importlib.import_module(f"bench.{name}").__doc__ or ""
    except ImportError:
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def images(name: str, figures: dict, img_dir: Path) -> list[str]:
    """Markdown image links (relative to docs/) for the bench's plots that exist."""
    names = {Path(str(p)).name for k, p in flatten(figures) if k.split(".")[-1] == "plot"}
    names |= {p.name for p in Path(img_dir).glob(f"{name}*.png")}
    return [f"![{n}](img/{n})" for n in sorted(names) if (Path(img_dir) / n).exists()]


def section(name: str, result: dict, img_dir: Path = IMG) -> str:
    """One bench's section: summary, measured line, table, notes, plots."""
    figures = result["figures"]
    parts = [f"## {name}", _summary(name), measured_line(result["measured"], figures), table(bench_rows(name, figures))]
    notes = [f"{k}: {v}" for k, v in flatten(figures) if k.split(".")[-1] in ("note", "reduced")]
    if notes:
        parts.append("\n".join(f"* {n}" for n in notes))
    parts += images(name, figures, img_dir)
    return "\n\n".join(p for p in parts if p)


def gpu_section(results: dict[str, dict]) -> str:
    """Paper-profile (GPU) figures present, or why there are none and how to measure them."""
    paper = sorted(n for n, r in results.items() if r["figures"].get("profile") == "paper")
    if paper:
        return (
            "## GPU (paper profile)\n\nPaper-profile figures are in the sections "
            + ", ".join(f"`{n}`" for n in paper)
            + "."
        )
    return """## GPU (paper profile)

No paper-profile figures: no GPU machine was lent to the task that wrote these benches (the device
tool reported the task as not drawn), so no step times were measured on the paper profile
(Llama-3.1-8B policy, ModernBERT-base reward, 7 + 5 surrogates).

To measure them on a GPU host with Hugging Face hub access (the paper profile's `source: hub`
downloads the models; Llama-3.1-8B needs an account with access to it):

    FLOWRL_BENCH_PROFILE=paper .venv/bin/python -m bench sft_throughput grpo_step

The benches place the models on the GPU through the trainers (and `bench._common.device()` for
the reward bench), but that path has never been run: expect to fix things on its first run."""


def build_report(results_dir: Path = RESULTS, out: Path = DOC, img_dir: Path = IMG) -> str:
    """Write `out` (docs/benchmarks.md) from every result in `results_dir`; return the text."""
    results = load_results(results_dir)
    body = [section(name, result, img_dir) for name, result in results.items()]
    if not body:
        body = ["No results yet: run `make bench`."]
    from bench.__main__ import discover

    if missing := [name for name in discover() if name not in results]:
        body.append(
            "## Not measured on the current policies\n\nNo result (an earlier one was measured on a policy no profile "
            f"uses any more, or the bench never ran): run `python -m bench {' '.join(missing)}`."
        )
    text = "\n\n".join([HEADER.strip(), *body, gpu_section(results)]) + "\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    return text


if __name__ == "__main__":
    print(f"wrote {DOC} ({len(build_report())} characters)")
