"""Benchmark figures: written, non-empty PNGs for every kind of plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmpretrain.finetune.plots import (
    plot_fold_bars,
    plot_learning_curves,
    plot_parity,
    plot_results,
    write_task_plots,
)

PNG = b"\x89PNG\r\n\x1a\n"


def fold_result(fold: int, metric: str = "mae") -> dict:
    rng = np.random.default_rng(fold)
    y = rng.normal(size=30)
    modes = {}
    for k, model in enumerate(("pretrained", "scratch", "gbm", "mean")):
        pred = y + rng.normal(scale=0.1 * (k + 1), size=30) if model != "mean" else np.zeros(30)
        modes[model] = {
            "test": {metric: float(np.abs(pred - y).mean())},
            "predictions": pred.tolist(),
        }
        if model in ("pretrained", "scratch"):
            modes[model]["history"] = [
                {"epoch": e, "val_mae": 1.0 / e + 0.1 * k, "val_error": 0.5} for e in range(1, 8)
            ]
            modes[model]["best_epoch"] = 7
    return {
        "task": "toy",
        "fold": fold,
        "metric": metric,
        "test_ids": [f"s{i}" for i in range(30)],
        "test_targets": y.tolist(),
        "modes": modes,
    }


def assert_png(path: Path | None, min_bytes: int = 5000) -> None:
    assert path is not None and path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > min_bytes, (path, len(data))


def test_every_plot_is_a_png(tmp_path):
    folds = [fold_result(0), fold_result(1)]
    assert_png(plot_parity(folds, tmp_path / "parity.png", unit="eV"), 20_000)
    assert_png(plot_learning_curves(folds, tmp_path / "curves.png"), 20_000)
    assert_png(plot_fold_bars(folds, tmp_path / "folds.png", unit="eV"), 10_000)
    stats = {"mean": 0.3, "std": 0.05, "per_fold": [0.3]}
    summary = {"task": "toy", "metric": "mae", "unit": "eV", "improvement_pct": 12.0}
    summary.update({m: stats for m in ("pretrained", "scratch", "gbm", "mean")})
    assert_png(plot_results([summary, {**summary, "task": "other"}], tmp_path / "results.png"))


def test_write_task_plots_names_and_skips(tmp_path):
    paths = write_task_plots(tmp_path, "toy", [fold_result(0)], unit="eV")
    names = sorted(p.name for p in paths)
    assert names == ["toy_curves.png", "toy_folds.png", "toy_parity.png"]
    for p in paths:
        assert p.parent == tmp_path / "plots"
        assert_png(p)
    # classification has no parity plot; folds without histories have no curves
    classified = fold_result(0, metric="error")
    for values in classified["modes"].values():
        values.pop("history", None)
    assert plot_parity([classified], tmp_path / "c.png") is None
    assert plot_learning_curves([classified], tmp_path / "c2.png") is None
    assert not (tmp_path / "c.png").exists()
