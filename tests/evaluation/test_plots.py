"""Plots are written as non-empty PNGs, including the no-policy case."""

from __future__ import annotations

from flowrl.evaluation.plots import plot_adaptivity, plot_novelty_vs_gamma, plot_score_distributions, plot_win_rates

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_are_png_files(tmp_path):
    rates = {"a": {"b": 0.7}, "b": {"a": 0.3}}
    paths = [
        plot_win_rates(rates, tmp_path / "w.png"),
        plot_novelty_vs_gamma(
            [
                (0.0, {"unique_ratio": 0.4, "exists_in_data": 0.0, "nld_ratio": 0.6}),
                (1.5, {"unique_ratio": 0.4, "exists_in_data": 0.0, "nld_ratio": 0.7}),
            ],
            tmp_path / "n.png",
        ),
        plot_novelty_vs_gamma([], tmp_path / "empty.png"),
        plot_score_distributions({"a": [0.1, 0.5, 0.3], "b": [0.2, 0.2, 0.9]}, tmp_path / "s.png"),
        plot_adaptivity(
            {
                "comfygen": (0.05, 0.01, 0.4),
                "fixed_best": (0.0, 0.02, 1.0),
                "sft": (float("nan"), float("nan"), float("nan")),
            },
            tmp_path / "a.png",
        ),  # NaN: a method with no valid flow
    ]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == PNG and len(data) > 2000
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files
