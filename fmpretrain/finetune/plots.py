"""Benchmark figures (matplotlib, Agg canvas: no display, no pyplot state).

- :func:`plot_results`: mean ± std of every model's test error, one panel per task;
- :func:`plot_parity`: prediction vs target on the test folds, one panel per model (every fold
  run, coloured by fold), one file per task (regression);
- :func:`plot_learning_curves`: validation metric per epoch, pre-trained vs scratch, one panel
  per fold;
- :func:`plot_fold_bars`: per-fold paired bars of the test error of every model;
- :func:`write_task_plots`: the three per-task figures under ``out/plots/``.

The inputs are the summaries and fold results that :mod:`fmpretrain.finetune.benchmark` writes
(``results.json`` tasks and ``<task>/fold_<k>.json``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COLORS",
    "LABELS",
    "MODEL_ORDER",
    "plot_fold_bars",
    "plot_learning_curves",
    "plot_parity",
    "plot_results",
    "write_task_plots",
]

logger = logging.getLogger(__name__)

#: Models in the order of every table and figure.
MODEL_ORDER = ("pretrained", "scratch", "gbm", "mean")
LABELS = {"pretrained": "pre-trained", "scratch": "scratch", "gbm": "GBM", "mean": "mean"}
COLORS = {"pretrained": "#1f77b4", "scratch": "#ff7f0e", "gbm": "#2ca02c", "mean": "#7f7f7f"}


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _error_label(metric: str, unit: str | None) -> str:
    label = "test MAE" if metric == "mae" else "test error rate"
    return f"{label} ({unit})" if unit and metric == "mae" else label


def plot_results(summaries: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Bars (mean) with error bars (std) of every model, one panel per task."""
    n = max(len(summaries), 1)
    fig = _figure(3.6 * n + 0.6, 3.6)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, s in zip(axes, summaries, strict=False):
        models = [m for m in MODEL_ORDER if s.get(m)]
        ax.bar(
            range(len(models)),
            [s[m]["mean"] for m in models],
            yerr=[s[m]["std"] for m in models],
            capsize=6,
            color=[COLORS[m] for m in models],
            edgecolor="black",
            linewidth=0.6,
        )
        ax.set_xticks(range(len(models)), [LABELS[m] for m in models])
        ax.set_ylabel(_error_label(s["metric"], s.get("unit")))
        gain = s.get("improvement_pct")
        ax.set_title(
            s["task"] + ("" if gain is None else f"\n{gain:+.1f}% vs scratch"), fontsize=10
        )
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_parity(
    fold_results: Sequence[dict[str, Any]], path: str | Path, *, unit: str = ""
) -> Path | None:
    """Prediction vs target on the test folds, one panel per model; None for classification."""
    if not fold_results or fold_results[0].get("metric") != "mae":
        return None
    from matplotlib.ticker import MaxNLocator

    models = [m for m in MODEL_ORDER if any(m in r["modes"] for r in fold_results)]
    fig = _figure(3.4 * len(models) + 0.4, 3.6)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    cmap = _fold_colors(len(fold_results))
    suffix = f" ({unit})" if unit else ""
    for ax, model in zip(axes, models, strict=True):
        targets, preds = [], []
        for color, result in zip(cmap, fold_results, strict=True):
            if model not in result["modes"]:
                continue
            y = np.asarray(result["test_targets"], dtype=np.float64)
            p = np.asarray(result["modes"][model]["predictions"], dtype=np.float64)
            ax.scatter(y, p, s=6, alpha=0.5, color=color, label=f"fold {result['fold']}")
            targets.append(y)
            preds.append(p)
        y, p = np.concatenate(targets), np.concatenate(preds)
        low, high = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.set_xlabel(f"target{suffix}")
        ax.set_ylabel(f"prediction{suffix}")
        ax.set_title(f"{LABELS[model]}: MAE {np.abs(p - y).mean():.4g}", fontsize=10)
        ax.grid(alpha=0.3)
    if len(fold_results) > 1:
        axes[0].legend(fontsize=7, markerscale=2)
    fig.suptitle(f"{fold_results[0]['task']}: test folds", fontsize=10)
    return _save(fig, path)


def plot_learning_curves(fold_results: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Validation metric per epoch of the GNNs, one panel per fold; None without histories."""
    folds = [
        r for r in fold_results if any(r["modes"].get(m, {}).get("history") for m in MODEL_ORDER)
    ]
    if not folds:
        return None
    key = "val_mae" if folds[0].get("metric") == "mae" else "val_error"
    fig = _figure(3.4 * len(folds) + 0.4, 3.4)
    axes = fig.subplots(1, len(folds), squeeze=False)[0]
    for ax, result in zip(axes, folds, strict=True):
        for model in ("pretrained", "scratch"):
            history = result["modes"].get(model, {}).get("history") or []
            if not history:
                continue
            epochs = [h["epoch"] for h in history]
            ax.plot(epochs, [h[key] for h in history], color=COLORS[model], label=LABELS[model])
            best = result["modes"][model].get("best_epoch")
            if best:
                ax.axvline(best, color=COLORS[model], linestyle=":", linewidth=0.8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation MAE" if key == "val_mae" else "validation error rate")
        ax.set_title(f"{result['task']} fold {result['fold']}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_fold_bars(
    fold_results: Sequence[dict[str, Any]], path: str | Path, *, unit: str = ""
) -> Path | None:
    """Grouped bars: the test error of every model in every fold."""
    if not fold_results:
        return None
    metric = fold_results[0].get("metric", "mae")
    models = [m for m in MODEL_ORDER if any(m in r["modes"] for r in fold_results)]
    width = 0.8 / max(len(models), 1)
    fig = _figure(1.2 * len(fold_results) * max(len(models), 1) / 2 + 2.4, 3.6)
    ax = fig.subplots()
    x = np.arange(len(fold_results))
    for k, model in enumerate(models):
        values = [r["modes"][model]["test"][metric] if model in r["modes"] else np.nan
                  for r in fold_results]  # fmt: skip
        ax.bar(x + (k - (len(models) - 1) / 2) * width, values, width, color=COLORS[model],
               edgecolor="black", linewidth=0.5, label=LABELS[model])  # fmt: skip
    ax.set_xticks(x, [f"fold {r['fold']}" for r in fold_results])
    ax.set_ylabel(_error_label(metric, unit))
    ax.set_title(f"{fold_results[0]['task']}: test error per fold", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_task_plots(
    out: str | Path, task: str, fold_results: Sequence[dict[str, Any]], *, unit: str = ""
) -> list[Path]:
    """``plots/{task}_parity.png``, ``{task}_curves.png``, ``{task}_folds.png`` under ``out``."""
    folder = Path(out) / "plots"
    written = [
        plot_parity(fold_results, folder / f"{task}_parity.png", unit=unit),
        plot_learning_curves(fold_results, folder / f"{task}_curves.png"),
        plot_fold_bars(fold_results, folder / f"{task}_folds.png", unit=unit),
    ]
    paths = [p for p in written if p is not None]
    logger.info("%s: wrote %s", task, ", ".join(str(p) for p in paths))
    return paths


def _fold_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(k % 10) for k in range(n)]
