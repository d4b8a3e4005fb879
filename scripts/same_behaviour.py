"""Same behaviour before and after a change: the tiny `dvc repro` metrics and 64 sampled constrained flows.

    python scripts/same_behaviour.py REV_A REV_B [--keep DIR] [--python PY]

For each revision: a fresh `git clone` into a temporary folder, checked out at the revision; `profile: tiny`
in its params.yaml; `.venv` linked to the environment of the Python that runs this script (or --python);
`python -m flows.local_server dvc repro --force` there with PYTHONPATH=<clone>/src:<clone>, so the clone's own
code runs (not the editable install's); then 64 constrained flows sampled with a fixed seed from the resulting
SFT + GRPO policy (`FlowPolicy.from_models_dir(models)`, dual-model guidance at gamma 1.5) for the first 64
prompts of the holdout then train prompts. Prints sha256 of every metrics file that the clone's dvc.yaml
declares (and every reports/*/metrics.json) and of each of the 64 flows (flow text and decoded workflow),
then IDENTICAL or the differences; exits 1 when they differ.

Wall-clock keys are excluded from the metrics hashes (they measure the machine, not the code): any key named
in TIMING_KEYS below, at any depth. Nothing else is excluded. The two revisions run one after the other
(about 3-4 minutes each for the tiny profile on 2 quiet cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# Keys whose values are wall-clock measurements (seconds, throughput): excluded from the metrics hashes. Two runs
# of the same revision differ in exactly these (reward: predict/train throughput, embed/train/stage seconds;
# sft: tokens_per_s; grpo: seconds_per_step); every other value is reproduced to the bit.
TIMING_KEYS = {
    "predict_samples_per_second",
    "train_samples_per_second",
    "embed_seconds",
    "train_seconds",
    "stage_seconds",
    "tokens_per_s",
    "seconds_per_step",
}
N_FLOWS = 64
SEED = 1234

SAMPLE = r"""
import json, sys
from pathlib import Path
from flowrl.policy.inference import FlowPolicy, ServingSettings
root = Path(sys.argv[1])
rows = []
for name in ("holdout", "train"):
    rows += [json.loads(line)["prompt"] for line in (root / "data/prompts" / f"{name}.jsonl").read_text().splitlines() if line.strip()]
prompts = rows[:%(n)d]
settings = ServingSettings(gamma=1.5, temperature=0.9, max_new_tokens=64, batch_size=8, seed=%(seed)d, usable_retries=2)
policy = FlowPolicy.from_models_dir(root / "models", settings)
out = []
for i in range(0, len(prompts), 32):
    out += policy.generate(prompts[i:i + 32], seed=%(seed)d)
(root / "sampled_flows.json").write_text(json.dumps(out, sort_keys=True, indent=1))
"""


def sh(args: list[str], cwd: Path, env: dict | None = None, log: Path | None = None) -> None:
    with open(log, "a") if log else open(os.devnull, "w") as out:
        proc = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {cwd} (exit {proc.returncode}); log: {log}")


def strip_timing(value):
    if isinstance(value, dict):
        return {k: strip_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [strip_timing(v) for v in value]
    return value


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def metrics_files(clone: Path) -> list[str]:
    import yaml

    spec = yaml.safe_load((clone / "dvc.yaml").read_text())
    paths = []
    for stage in spec["stages"].values():
        for entry in stage.get("metrics", []):
            paths.append(entry if isinstance(entry, str) else next(iter(entry)))
    # and every stage's metrics.json, declared as a metric or not (evaluate declares summary.json)
    return sorted(set(paths) | {str(p.relative_to(clone)) for p in clone.glob("reports/*/metrics.json")})


def run_revision(repo: Path, rev: str, work: Path, python: Path) -> dict[str, str]:
    clone = work / rev.replace("/", "_")
    log = work / f"{rev.replace('/', '_')}.log"
    print(f"[{rev}] clone into {clone}; log {log}", flush=True)
    sh(["git", "clone", "-q", "--no-checkout", str(repo), str(clone)], work)
    sh(["git", "checkout", "-q", "--detach", rev], clone)
    params = clone / "params.yaml"
    text, n = re.subn(r"(?m)^profile: \w+", "profile: tiny", params.read_text(), count=1)
    assert n == 1, "params.yaml has no top-level `profile:` line"
    params.write_text(text)
    (clone / ".venv").symlink_to(python.parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "GIT_"))}
    env.update(PYTHONPATH=f"{clone / 'src'}:{clone}", OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    check = subprocess.run(
        [str(python), "-c", "import flowrl; print(flowrl.__file__)"], cwd=clone, env=env, capture_output=True, text=True
    )
    assert check.stdout.strip().startswith(str(clone)), f"flowrl imported from {check.stdout.strip()}, not the clone"
    print(f"[{rev}] dvc repro (tiny) ...", flush=True)
    sh([str(python), "-m", "flows.local_server", str(python.with_name("dvc")), "repro", "--force"], clone, env, log)
    print(f"[{rev}] sampling {N_FLOWS} constrained flows ...", flush=True)
    sh([str(python), "-c", SAMPLE % {"n": N_FLOWS, "seed": SEED}, str(clone)], clone, env, log)
    hashes: dict[str, str] = {}
    for path in metrics_files(clone):
        data = json.loads((clone / path).read_text())
        hashes[path] = sha(json.dumps(strip_timing(data), sort_keys=True).encode())
    for i, row in enumerate(json.loads((clone / "sampled_flows.json").read_text())):
        hashes[f"flow[{i:02d}]"] = sha(json.dumps(row, sort_keys=True).encode())
    return hashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep the clones")
    parser.add_argument(
        "--python", type=Path, default=Path(sys.executable), help="the environment's python (dvc beside it)"
    )
    args = parser.parse_args(argv)
    repo = Path(
        subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    )
    revs = [
        subprocess.run(["git", "rev-parse", r], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        for r in (args.rev_a, args.rev_b)
    ]
    with tempfile.TemporaryDirectory(prefix="same_behaviour_") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = []
        for label, rev in zip(("A", "B"), revs, strict=True):
            sub = work / label
            sub.mkdir(exist_ok=True)
            results.append(run_revision(repo, rev, sub, args.python))
    a, b = results
    print(f"\nA = {revs[0]}\nB = {revs[1]}\nexcluded metrics keys (wall clock): {sorted(TIMING_KEYS)}")
    diffs = []
    for key in sorted(set(a) | set(b)):
        same = a.get(key) == b.get(key)
        print(f"{'same' if same else 'DIFF'}  {key:40s} A {a.get(key, '-')[:16]}  B {b.get(key, '-')[:16]}")
        if not same:
            diffs.append(key)
    n_metrics = sum(not k.startswith("flow[") for k in a)
    print(f"\n{n_metrics} metrics files, {N_FLOWS} flows compared")
    print("IDENTICAL" if not diffs else f"DIFFERENT: {', '.join(diffs)}")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
