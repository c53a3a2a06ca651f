"""Comparison plots (every chapter, and the summary): loss curves, peak memory, parameters.

Each function takes run dicts as written to the results files (see `Measurement.as_run`),
draws on `ax` if given or on a new figure, and returns the Axes (its figure is `ax.figure`).
All share one small style so the book's figures look alike.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

# One style for every figure in the book: a colour-blind-safe palette (Okabe & Ito), a light
# grid, no top/right frame. Applied to each Axes explicitly rather than via rcParams, so it
# never changes the notebook's own matplotlib settings.
STYLE = {
    "figsize": (6.4, 3.6),  # inches; fits the book's text column
    "colors": ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"],
    "grid_alpha": 0.3,
}
COLORS = STYLE["colors"]


def _axes(ax: Axes | None, grid: str = "both") -> Axes:
    """The given Axes, or a new figure's, with the lab's style applied."""
    if ax is None:
        _, ax = plt.subplots(figsize=STYLE["figsize"], layout="constrained")
    ax.set_prop_cycle(color=COLORS)
    ax.grid(True, axis=grid, alpha=STYLE["grid_alpha"])
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def _human(n: float) -> str:
    """1234567 -> '1.2M'"""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def _mb(v: float) -> str:
    """191.3 -> '191', 0.523 -> '0.52'"""
    return f"{v:,.0f}" if v >= 10 else f"{v:.2g}"


def _pct(p: float) -> str:
    """100.0 -> '100%', 0.408 -> '0.41%'"""
    return f"{p:.0f}%" if p >= 10 else f"{p:.2g}%"


def plot_losses(runs: list[dict], ax: Axes | None = None, title: str = "Training loss") -> Axes:
    """One loss curve per run that has a `loss_history` (x: optimiser step, y: loss)."""
    ax = _axes(ax)
    for run in runs:
        history = run.get("loss_history") or []
        if history:
            steps, losses = zip(*history)
            ax.plot(steps, losses, marker="." if len(history) < 30 else None,
                    label=run["name"])
    if ax.lines:
        ax.legend(frameon=False)
    else:
        ax.text(0.5, 0.5, "no loss history in these runs", ha="center", va="center",
                transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="step", ylabel="loss", title=title)
    return ax


def plot_memory(runs: list[dict], ax: Axes | None = None, title: str = "Peak memory") -> Axes:
    """Peak memory per run (MB), labelled with its kind (CPU RSS or CUDA allocated)."""
    ax = _axes(ax, grid="y")
    names = [run["name"] for run in runs]
    values = [run["peak_memory_mb"] for run in runs]
    bars = ax.bar(names, values, color=[COLORS[i % len(COLORS)] for i in range(len(runs))])
    ax.bar_label(bars, labels=[_mb(v) for v in values], padding=2)
    kinds = sorted({run["memory_kind"] for run in runs})
    ax.set(ylabel=f"peak memory (MB, {' / '.join(kinds)})", title=title)
    ax.tick_params(axis="x", labelrotation=20 if len(runs) > 3 else 0)
    return ax


def plot_params(runs: list[dict], ax: Axes | None = None,
                title: str = "Trainable vs total parameters") -> Axes:
    """Trainable and total parameters side by side per run, on a log scale."""
    ax = _axes(ax, grid="y")
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
                 labels=[f"{_human(r['trainable_params'])} ({_pct(100 * r['trainable_params'] / t)})"
                         for r, t in zip(runs, total)])
    ax.set_yscale("log")
    ax.set_ylim(top=max(total) * 4)  # room for the labels above the tallest bar
    ax.set_xticks(list(x), [run["name"] for run in runs])
    ax.set(ylabel="parameters (log scale)", title=title)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
    return ax


def plot_matrix(table, ax: Axes | None = None, title: str = "", fmt: str = "{:.2f}",
                xlabel: str = "", ylabel: str = "", vmin: float = 0.0, vmax: float = 1.0) -> Axes:
    """A labelled heat map of a pandas DataFrame (rows x columns), each cell annotated; the
    best value of each column is bold. Chapter 3 (adapter x domain) and chapter 9 use it."""
    ax = _axes(ax)
    ax.grid(False)  # a heat map's cells are its grid
    values = table.to_numpy(dtype=float)
    ax.imshow(values, cmap="Blues", vmin=vmin, vmax=vmax, aspect="auto")
    best = values.max(axis=0)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            dark = (values[i, j] - vmin) > 0.6 * (vmax - vmin)
            ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center",
                    color="white" if dark else "black",
                    fontweight="bold" if values[i, j] == best[j] else "normal")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in table.columns])
    ax.set_yticks(range(values.shape[0]), [str(r) for r in table.index])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return ax
