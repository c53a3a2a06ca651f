"""Comparison plots (every chapter, and the summary): loss curves, peak memory, parameters.

Each function takes run dicts as written to the results files (see `Measurement.as_run`),
draws on `ax` if given or on a new figure, and returns the Axes (its figure is `ax.figure`).
All share one small style so the book's figures look alike.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from cycler import cycler
from matplotlib.axes import Axes

# Colour-blind-safe palette (Okabe & Ito), light grid, no top/right spines.
COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=COLORS),
    "legend.frameon": False,
}


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    with plt.rc_context(STYLE):
        _, ax = plt.subplots(layout="constrained")
    return ax


def _human(n: float) -> str:
    """1234567 -> '1.2M'"""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def plot_losses(runs: list[dict], ax: Axes | None = None, title: str = "Training loss") -> Axes:
    """One loss curve per run that has a `loss_history` (x: optimiser step, y: loss)."""
    ax = _axes(ax)
    with plt.rc_context(STYLE):
        for run in runs:
            history = run.get("loss_history") or []
            if history:
                steps, losses = zip(*history)
                ax.plot(steps, losses, marker="." if len(history) < 30 else None,
                        label=run["name"])
        if ax.lines:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no loss history in these runs", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set(xlabel="step", ylabel="loss", title=title)
    return ax


def plot_memory(runs: list[dict], ax: Axes | None = None, title: str = "Peak memory") -> Axes:
    """Peak memory per run (MB), labelled with its kind (CPU RSS or CUDA allocated)."""
    ax = _axes(ax)
    with plt.rc_context(STYLE):
        names = [run["name"] for run in runs]
        values = [run["peak_memory_mb"] for run in runs]
        bars = ax.bar(names, values, color=[COLORS[i % len(COLORS)] for i in range(len(runs))])
        ax.bar_label(bars, labels=[f"{v:.0f}" for v in values], padding=2)
        kinds = sorted({run["memory_kind"] for run in runs})
        ax.set(ylabel=f"peak memory (MB, {' / '.join(kinds)})", title=title)
        ax.tick_params(axis="x", labelrotation=20 if len(runs) > 3 else 0)
    return ax


def plot_params(runs: list[dict], ax: Axes | None = None,
                title: str = "Trainable vs total parameters") -> Axes:
    """Trainable and total parameters side by side per run, on a log scale."""
    ax = _axes(ax)
    with plt.rc_context(STYLE):
        x = range(len(runs))
        width = 0.4
        total = [run["total_params"] for run in runs]
        trainable = [max(run["trainable_params"], 1) for run in runs]  # log scale: no zeros
        bars_total = ax.bar([i - width / 2 for i in x], total, width, label="total",
                            color=COLORS[0])
        bars_train = ax.bar([i + width / 2 for i in x], trainable, width, label="trainable",
                            color=COLORS[1])
        ax.bar_label(bars_total, labels=[_human(n) for n in total], padding=2, fontsize=8)
        ax.bar_label(bars_train, padding=2, fontsize=8,
                     labels=[f"{_human(r['trainable_params'])} ({100 * r['trainable_params'] / t:.2g}%)"
                             for r, t in zip(runs, total)])
        ax.set_yscale("log")
        ax.set_xticks(list(x), [run["name"] for run in runs])
        ax.set(ylabel="parameters (log scale)", title=title)
        ax.legend()
    return ax
