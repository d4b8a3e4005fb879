"""The bench harness, not the timings: module discovery, the report builder, the log-log exponent fit."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `bench` lives beside src/, at the repository root

from bench import _report  # noqa: E402
from bench.__main__ import discover  # noqa: E402
from bench._common import Stopwatch, fit_exponent  # noqa: E402

MEASURED = {"date": "2026-01-02", "cpus": 2, "machine": "x86_64", "omp_num_threads": "1", "load_avg_1m": 1.5}


def write_result(folder: Path, name: str, figures: dict, measured: dict = MEASURED) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"measured": measured, "figures": figures}))
    return path


def test_discovery_finds_the_benches_and_skips_private_modules():
    names = discover()
    assert {
        "encoding",
        "constrained",
        "pipeline",
        "sft_throughput",
        "reward_throughput",
        "reward_ceiling",
        "generation",
        "grpo_step",
        "scale",
    } <= set(names)
    assert not any(n.startswith("_") for n in names)
    assert "report" not in names and "_report" not in names and "_common" not in names


def test_unknown_bench_name_is_refused():
    from bench.__main__ import main

    with pytest.raises(SystemExit, match="unknown bench nope"):
        main(["nope"])


def test_report_uses_a_modules_rows_and_flattens_the_others(tmp_path):
    results = tmp_path / "results"
    write_result(
        results,
        "generation",
        {
            "profile": "cpu",
            "model": "m",
            "bf16": False,
            "gamma": 1.5,
            "batch": 8,
            "new_tokens_per_flow": 96,
            "repeats": 3,
            "single": {"s_per_flow": 2.0, "ms_per_token": 20.0, "ms_per_step": 160.0},
            "guided": {"s_per_flow": 2.4, "ms_per_token": 24.0, "ms_per_step": 190.0},
            "ratio": 1.2,
            "target_ratio": 1.5,
        },
    )
    write_result(results, "made_up", {"profile": "tiny", "a": {"b": 0.123456, "c": [1, 2]}, "note": "fell back"})
    out = tmp_path / "docs" / "benchmarks.md"
    text = _report.build_report(results, out, tmp_path / "img")
    assert out.read_text() == text
    assert text.startswith("# Benchmarks") and "make bench" in text and "python -m bench NAME" in text
    assert "## generation" in text and "## made_up" in text and "## GPU (paper profile)" in text
    assert "| guided / single latency | 1.20x | <= 1.5x | yes |" in text  # the module's rows()
    assert "| a.b | 0.123 |  |  |" in text and "| a.c | 1, 2 |  |  |" in text  # flattened fallback
    assert "* note: fell back" in text
    assert "## Not measured on the current policies" in text
    missing = (
        re.search(r"run `python -m bench ([^`]*)`", text.split("## Not measured on the current policies")[1])
        .group(1)
        .split()
    )
    assert (
        {"best_of_n", "constrained", "encoding"} <= set(missing)
        and "generation" not in missing
        and missing == sorted(missing)
    )
    assert (
        "Measured 2026-01-02 on 2 CPUs, x86_64, OMP_NUM_THREADS=1, load average 1.5 at the start, profile `cpu`, commit not recorded."
        in text
    )


def test_report_says_no_target_met_when_it_is_not(tmp_path):
    write_result(
        tmp_path,
        "generation",
        {
            "profile": "cpu",
            "model": "m",
            "bf16": False,
            "gamma": 1.5,
            "batch": 8,
            "new_tokens_per_flow": 96,
            "repeats": 3,
            "single": {"s_per_flow": 1.0, "ms_per_token": 10.0, "ms_per_step": 80.0},
            "guided": {"s_per_flow": 2.0, "ms_per_token": 20.0, "ms_per_step": 160.0},
            "ratio": 2.0,
            "target_ratio": 1.5,
        },
    )
    text = _report.build_report(tmp_path, tmp_path / "b.md", tmp_path / "img")
    assert "| guided / single latency | 2.00x | <= 1.5x | no |" in text


def test_older_figures_fall_back_to_the_flat_table(tmp_path):
    write_result(tmp_path, "generation", {"profile": "cpu", "ratio": 1.1})  # rows() would need more keys
    text = _report.build_report(tmp_path, tmp_path / "b.md", tmp_path / "img")
    assert "| ratio | 1.1 |  |  |" in text


def test_images_that_exist_are_linked(tmp_path):
    img = tmp_path / "img"
    img.mkdir()
    (img / "scale.png").write_bytes(b"png")
    write_result(
        tmp_path / "results",
        "scale",
        {"profile": "tiny", "plot": "docs/img/scale.png", "other": {"plot": "docs/img/gone.png"}},
    )
    text = _report.build_report(tmp_path / "results", tmp_path / "b.md", img)
    assert "![scale.png](img/scale.png)" in text and "![gone.png]" not in text


def test_malformed_results_fail_clearly(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(_report.ReportError, match=r"broken.json: not valid JSON.*python -m bench broken"):
        _report.build_report(tmp_path, tmp_path / "b.md", tmp_path / "img")
    (tmp_path / "broken.json").write_text(json.dumps({"figures": {}}))
    with pytest.raises(_report.ReportError, match="needs the objects 'measured' and 'figures'"):
        _report.load_results(tmp_path)


def test_empty_results_still_give_a_page(tmp_path):
    text = _report.build_report(tmp_path, tmp_path / "b.md", tmp_path / "img")
    assert "No results yet" in text and "## GPU (paper profile)" in text


@pytest.mark.parametrize("k", [0.5, 1.0, 2.3])
def test_exponent_fit_recovers_a_known_exponent(k):
    sizes = np.array([100, 200, 400, 800, 1600])
    noise = np.exp(np.random.default_rng(0).normal(0, 0.01, len(sizes)))
    fitted, c = fit_exponent(sizes, 0.02 * sizes**k * noise)
    assert fitted == pytest.approx(k, abs=0.03)
    assert c == pytest.approx(0.02, rel=0.2)


def test_exponent_fit_needs_two_positive_points():
    with pytest.raises(ValueError, match="need >= 2 positive"):
        fit_exponent([10], [1.0])
    with pytest.raises(ValueError, match="need >= 2 positive"):
        fit_exponent([10, 20], [1.0, 0.0])


def test_stopwatch_patch_times_calls_and_restores():
    class Thing:
        def work(self, x):
            return 2 * x

    original, watch = Thing.__dict__["work"], Stopwatch()
    with watch.patch(Thing, "work", lambda: "bucket"):
        assert Thing.__dict__["work"] is not original
        assert Thing().work(3) == 6 and Thing().work(4) == 8
    assert watch.calls["bucket"] == 2 and watch.seconds["bucket"] >= 0
    assert Thing.__dict__["work"] is original


def _planted_triplets(n: int, seed: int) -> list[dict]:
    """Scores set by the flow's checkpoint and whether the prompt asks for a photo: learnable, with interaction."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        ckpt, photo = int(rng.integers(0, 6)), bool(rng.integers(0, 2))
        score = 0.1 * ckpt + (0.4 if photo == (ckpt % 2 == 0) else 0.0) + rng.normal(0, 0.01)
        rows.append(
            {
                "prompt": f"{'a photo of' if photo else 'a drawing of'} a cat",
                "flow": f"Loader ckpt=m{ckpt}\nSampler steps={int(rng.integers(20, 22))}",
                "score": score,
            }
        )
    return rows


def test_reward_ceiling_learners_recover_a_planted_signal():
    from bench.reward_ceiling import flow_mean, learning_curve, rows_to_reach

    train, test = _planted_triplets(600, 0), _planted_triplets(200, 1)
    true = np.array([r["score"] for r in test])
    flow_only = flow_mean(train, test)  # knows the checkpoint, not the prompt
    assert 0.2 < np.corrcoef(flow_only, true)[0, 1] < 0.8
    curve = learning_curve(train, test, sizes=(50, 200), repeats=2)
    assert set(curve) == {"flow_mean", "ridge", "gbm"} and list(curve["gbm"]) == ["50", "200", "600"]
    assert curve["gbm"]["600"] > 0.9 > curve["flow_mean"]["600"]  # the interaction needs the prompt
    assert rows_to_reach(curve["gbm"], 0.9) is not None and rows_to_reach(curve["flow_mean"], 0.9) is None


def test_reward_ceiling_leaves_flow_mean_out_on_unseen_flows():
    from bench.reward_ceiling import learning_curve

    train, test = _planted_triplets(300, 0), _planted_triplets(100, 1)
    test = [{**r, "flow": r["flow"] + " unseen"} for r in test]
    curve = learning_curve(train, test, sizes=(100,), repeats=1)
    assert set(curve) == {"ridge", "gbm"} and all(np.isfinite(v) for points in curve.values() for v in points.values())


def test_reward_ceiling_names_the_missing_triplets(tmp_path):
    from bench.reward_ceiling import _triplets
    from flowrl.params.model import RewardConfig

    with pytest.raises(SystemExit, match=r"train.jsonl not found: build the triplets first \(`dvc repro triplets`\)"):
        _triplets(tmp_path, RewardConfig(), 0)


def test_pairing_ceiling_ranking_separates_the_interaction_from_the_main_effects():
    from bench.pairing_ceiling import interaction, ranking

    rng = np.random.default_rng(0)
    prompt, flow, cross = rng.normal(size=(8, 1)), rng.normal(size=(1, 40)), rng.normal(size=(8, 40))
    assert np.allclose(interaction(prompt + flow), 0.0)  # a fixed flow's part is taken out
    truth = prompt + flow + cross
    perfect, main_only = ranking(truth, truth), ranking(truth, prompt + flow)
    assert perfect["within_prompt_spearman"] == 1.0 and perfect["top5pct_overlap"] == 1.0
    assert perfect["interaction_pearson"] == 1.0 and abs(main_only["interaction_pearson"]) < 0.1
    assert main_only["within_prompt_spearman"] < 0.9 and 0.3 < perfect["interaction_share"] < 0.9


def test_pairing_ceiling_votes_teacher_moves_the_surrogate_towards_the_neighbours_labels():
    from bench.pairing_ceiling import certain_argmax, neighbour_votes, shrink_to_votes

    # 2 asked prompts, 3 training prompts voting on 3 flows; prompt 0 is most like training prompt 2
    similarity = np.array([[0.1, 0.2, 0.9], [0.9, 0.5, 0.0]])
    voters = [[(0, 1.0)], [(1, 0.2), (0, 0.6)], [(2, 1.0), (2, 0.6)]]
    votes, count = neighbour_votes(similarity, voters, n_flows=3, k=1)
    assert count.tolist() == [[0, 0, 2], [1, 0, 0]] and votes[0, 2] == pytest.approx(0.8) and votes[1, 0] == 1.0
    votes2, count2 = neighbour_votes(similarity, voters, n_flows=3, k=2)
    assert count2[0].tolist() == [1, 1, 2] and votes2[0, 0] == 0.6  # the 2nd nearest adds its own triplets
    mean, std = np.array([[0.5, 0.4, 0.3], [0.2, 0.6, 0.1]]), np.array([[0.0, 0.0, 0.0], [0.0, 9.0, 0.0]])
    assert certain_argmax(mean, std, tau=1.0).tolist() == [0, 0]  # flow 1 of prompt 1 is too uncertain
    shrunk = shrink_to_votes(mean, votes, count, n0=1.0)
    assert shrunk[0].tolist() == pytest.approx([0.5, 0.4, 0.3 + 2 / 3 * 0.5])  # unvoted flows keep their mean
    assert certain_argmax(shrunk, std, tau=1.0).tolist() == [2, 0]
    assert np.allclose(shrink_to_votes(mean, votes, count, n0=1e12), mean)


def test_grpo_headroom_names_the_missing_evaluation(tmp_path, monkeypatch):
    from bench import grpo_headroom

    monkeypatch.setenv("FLOWRL_BENCH_ROOT", str(tmp_path))
    with pytest.raises(SystemExit, match=r"flows.jsonl not found: run the evaluate stage first"):
        grpo_headroom.main()


def test_upscaler_choice_rewrites_only_the_upscale_model():
    from bench.upscaler_choice import UPSCALER, is_anime, variants

    text = "UpscaleModelLoader model_name=4x-AnimeSharp.pth\nImageUpscaleWithModel image=@8 upscale_model=@9"
    out = variants(text, ["a.pth", "RealESRGAN_x4plus_anime_6B.pth"])
    assert [UPSCALER.findall(t) for t in out] == [["a.pth"], ["RealESRGAN_x4plus_anime_6B.pth"]]
    assert all(t.endswith("upscale_model=@9") for t in out)
    assert is_anime("4x-AnimeSharp.pth") and not is_anime("4x-UltraSharp.pth")


def test_the_measured_line_names_policy_and_commit():
    measured = {**MEASURED, "commit": "0123456789abcdef0123"}
    line = _report.measured_line(measured, {"profile": "cpu", "policy": "small Llama"})
    assert line.endswith("profile `cpu`, policy small Llama, commit `0123456789ab`.")


def test_every_result_names_its_commit_or_predates_the_record():
    """Results measured from now on carry their commit; the older ones are listed until rerun."""
    from bench.__main__ import commit

    assert len(commit().split("+")[0]) == 40
    for path in sorted((REPO / "bench/results").glob("*.json")):
        measured = json.loads(path.read_text())["measured"]
        assert "commit" in measured or measured["date"] <= "2026-12-05", path.name


def test_bench_pipeline_records_the_commit_and_the_dvc_metrics(tmp_path):
    import os
    import subprocess

    from bench.pipeline import run_record

    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    (tmp_path / "dvc.yaml").write_text("metrics:\n- reports/sft/metrics.json\n")
    (tmp_path / "reports/sft").mkdir(parents=True)
    (tmp_path / "reports/sft/metrics.json").write_text('{"perplexity": 1.25}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    for cmd in (
        ["git", "init", "-q"],
        [str(tmp_path / ".venv/bin/dvc"), "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"],
    ):
        subprocess.run(cmd, cwd=tmp_path, check=True, env=env)
    record = run_record(tmp_path, env)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert record == {"commit": head, "metrics": {"reports/sft/metrics.json": {"perplexity": 1.25}}}
