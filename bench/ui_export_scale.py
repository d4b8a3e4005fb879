"""`flowrl flow to-ui` on large API graphs: time against node count (linear?) and the 40,000-node file end to end.

Target (issue 25): a 40,000-node workflow (under the 5 MiB file limit) laid out in <= 10 s by the CLI, in time
linear in the graph (fitted exponent of api_to_ui seconds against nodes <= 1.2). The graphs: one checkpoint and
one empty latent feeding chains of 10 `LatentUpscaleBy` nodes each ending in a `VAEDecode` (fan-out and depth).
Run: `python -m bench ui_export_scale` (~1 min).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import REPO, Row, fit_exponent, status

TARGET_S = 10.0
TARGET_K = 1.2
SIZES = (5_000, 10_000, 20_000, 40_000)
CHAIN = 10


def big_graph(n_nodes: int) -> dict:
    """An API graph of exactly `n_nodes` nodes: 2 sources, then chains of CHAIN upscales and a decode."""
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd.safetensors"}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    }
    nid = 2
    while nid < n_nodes:
        prev = ["2", 0]
        for _ in range(min(CHAIN, n_nodes - nid - 1)):
            nid += 1
            graph[str(nid)] = {
                "class_type": "LatentUpscaleBy",
                "inputs": {"upscale_method": "nearest-exact", "scale_by": 1.0, "samples": prev},
            }
            prev = [str(nid), 0]
        nid += 1
        graph[str(nid)] = {"class_type": "VAEDecode", "inputs": {"samples": prev, "vae": ["1", 2]}}
    return graph


def main() -> dict:
    from flowrl.comfy.ui_export import api_to_ui

    seconds = []
    for n in SIZES:
        graph = big_graph(n)
        t0 = time.perf_counter()
        ui = api_to_ui(graph)
        seconds.append(round(time.perf_counter() - t0, 3))
        assert len(ui["nodes"]) == n
        print(f"api_to_ui {n} nodes: {seconds[-1]:.2f} s")
    k, _ = fit_exponent(SIZES, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.json"
        path.write_text(json.dumps(big_graph(SIZES[-1]), separators=(",", ":")))
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "flowrl.cli.main", "flow", "to-ui", str(path), "-o", str(Path(tmp) / "ui.json")],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        cli_s = round(time.perf_counter() - t0, 2)
        if proc.returncode != 0:
            raise RuntimeError(f"flowrl flow to-ui failed: {proc.stderr[-1000:]}")
        size_mib = round(path.stat().st_size / 2**20, 2)
    print(f"CLI {SIZES[-1]} nodes ({size_mib} MiB): {cli_s:.2f} s; exponent {k:.2f}")
    return {
        "nodes": list(SIZES),
        "api_to_ui_s": seconds,
        "exponent": round(k, 2),
        "cli_nodes": SIZES[-1],
        "cli_file_mib": size_mib,
        "cli_s": cli_s,
    }


def rows(f: dict) -> list[Row]:
    return [
        (
            f"`flowrl flow to-ui` on {f['cli_nodes']:,} nodes ({f['cli_file_mib']} MiB), wall",
            f"{f['cli_s']:.1f} s",
            f"<= {TARGET_S:.0f} s",
            status(f["cli_s"] <= TARGET_S),
        ),
        (
            "api_to_ui seconds ~ nodes^k, fitted k",
            f"{f['exponent']:.2f}",
            f"<= {TARGET_K}",
            status(f["exponent"] <= TARGET_K),
        ),
        (
            "api_to_ui seconds at " + ", ".join(f"{n:,}" for n in f["nodes"]) + " nodes",
            ", ".join(f"{s:.2f}" for s in f["api_to_ui_s"]),
            "",
            "",
        ),
    ]
