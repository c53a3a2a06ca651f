"""Forgetting at matched task accuracy (chapter 4: full fine-tuning against LoRA).

Each method is a set of points (task accuracy, perplexity rise on general text): the same run
scored at several step counts (a learning-forgetting curve built from training duration, as
Biderman et al. 2024 do), or several runs. A method's frontier joins the points no other point
of it beats on both. Comparing two methods' frontiers at one task accuracy follows Biderman et
al. 2024, "LoRA Learns Less and Forgets Less"; `interpolation_gap` says how far apart the
measured points are that a frontier reads between, so a comparison can refuse to read a value
across a wide gap.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .stats import CONFIDENCE, N_RESAMPLES, _as_array, _interval, _perplexity


def frontier_at(x: Sequence[float], y: Sequence[float], level: float) -> float:
    """y at x = `level` on the frontier of the points (x[i], y[i]) where higher x and lower y
    are better (e.g. x = task accuracy, y = forgetting): the points no other point beats on
    both, joined by straight lines, flat beyond the end points. So "the least y seen at
    x = level", interpolated between runs."""
    keep_x, keep_y = _frontier(x, y, "frontier_at")
    return float(np.interp(level, keep_x, keep_y))


def _frontier(x, y, name: str) -> tuple[np.ndarray, np.ndarray]:
    # The frontier's points, in increasing x.
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1 or xs.size == 0:
        raise ValueError(f"{name}: x and y must be non-empty lists of equal length, "
                         f"got {xs.shape}, {ys.shape}")
    keep_x, keep_y, best = [], [], np.inf
    for i in np.lexsort((ys, -xs)):  # highest x first; for equal x, lowest y first
        if ys[i] < best:
            keep_x.append(xs[i])
            keep_y.append(ys[i])
            best = ys[i]
    return np.array(keep_x[::-1]), np.array(keep_y[::-1])


def interpolation_gap(x: Sequence[float], y: Sequence[float], level: float) -> float:
    """How far apart, in x, the two frontier points are that `frontier_at(x, y, level)` reads
    between: 0.0 when a frontier point sits at x = `level`, the distance between the points on
    either side of it otherwise, and `inf` when `level` lies beyond the highest or lowest x on
    the frontier (where `frontier_at` extends the end point flat: nothing was measured there).
    A value read across a gap of 0.3 in accuracy is a straight line drawn between two runs, not
    a measurement. Same inputs and errors as `frontier_at`."""
    fx, _ = _frontier(x, y, "interpolation_gap")
    if np.any(np.isclose(fx, level, rtol=0.0, atol=1e-12)):
        return 0.0
    if level < fx[0] or level > fx[-1]:
        return float("inf")
    above = int(np.searchsorted(fx, level))  # fx[above - 1] < level < fx[above]
    return float(fx[above] - fx[above - 1])


def least_forgetting_at(x: Sequence[float], y: Sequence[float], level: float, width: float) -> float:
    """The least y among the measured points whose x lies in [level, level + width] (x = task
    accuracy, y = forgetting): how little a method forgot at a point where it had learned about
    `level`, read off a measured point, with no line drawn between points. NaN when no point
    lies in that window. Raises ValueError for lists of unequal length or a negative width."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1 or xs.size == 0 or width < 0:
        raise ValueError("least_forgetting_at: x and y must be non-empty lists of equal length and "
                         f"width >= 0, got {xs.shape}, {ys.shape}, width {width}")
    inside = (xs >= level - 1e-12) & (xs <= level + width + 1e-12)
    return float(ys[inside].min()) if inside.any() else float("nan")


def forgetting_at_matched_accuracy(correct_a, nll_a, correct_b, nll_b, base_nll, tokens, level: float,
                                   base_correct=None, width: float | None = None,
                                   confidence: float = CONFIDENCE,
                                   n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """Method A's perplexity rise minus method B's, each read off its frontier (`frontier_at`)
    at task accuracy `level` — or, with `width`, at its least-forgetting measured point with
    accuracy in [level, level + width] (`least_forgetting_at`) — with a bootstrap interval:
    claim kwargs. With `width`, resamples in which a method has no point in the window are left
    out of the interval; ValueError when one has none on the full data.

    Each method is several runs (e.g. three learning rates). `correct_a`: shape (runs_a, items),
    1.0 where run r answered test item i; `nll_a`: shape (runs_a, docs), per-document summed NLL
    on general text; the same for B; `base_nll`, `tokens`: shape (docs,), the base model's NLL and
    tokens per document. A run's point is (accuracy, ppl - base ppl). With `base_correct` (shape
    (items,)) the base model, at its accuracy and no rise, starts both curves (learning rate 0).
    Test items and documents are resampled (each paired across every run), the curves and their
    difference recomputed; `n` counts documents. Comparing at matched accuracy follows Biderman
    et al. 2024, "LoRA Learns Less and Forgets Less"."""
    ca, cb = np.atleast_2d(np.asarray(correct_a, float)), np.atleast_2d(np.asarray(correct_b, float))
    na, nb = np.atleast_2d(np.asarray(nll_a, float)), np.atleast_2d(np.asarray(nll_b, float))
    base, t = _as_array(base_nll, "base_nll"), _as_array(tokens, "tokens")
    if ca.shape[0] != na.shape[0] or cb.shape[0] != nb.shape[0]:
        raise ValueError("each method needs as many rows of item scores as of document NLLs (one per run)")
    if ca.shape[1] != cb.shape[1] or not na.shape[1] == nb.shape[1] == base.size == t.size:
        raise ValueError("both methods must be scored on the same test items and the same documents")
    bc = None if base_correct is None else _as_array(base_correct, "base_correct")
    if bc is not None and bc.size != ca.shape[1]:
        raise ValueError("base_correct must score the same test items")

    def difference(items, docs):
        base_ppl = _perplexity(base[docs], t[docs])
        values = []
        for c, n in ((ca, na), (cb, nb)):
            acc = c[:, items].mean(axis=1)
            rise = _perplexity(n[:, docs], t[docs]) - base_ppl
            if bc is not None:
                acc, rise = np.append(acc, bc[items].mean()), np.append(rise, 0.0)
            values.append(frontier_at(acc, rise, level) if width is None
                          else least_forgetting_at(acc, rise, level, width))
        return values[0] - values[1]

    n_items, n_docs = ca.shape[1], t.size
    measured = float(difference(np.arange(n_items), np.arange(n_docs)))
    if not np.isfinite(measured):
        raise ValueError(f"a method has no measured point with accuracy in [{level}, {level + width}]")
    rng = np.random.default_rng(seed)
    samples = np.array([difference(rng.integers(0, n_items, n_items), rng.integers(0, n_docs, n_docs))
                        for _ in range(n_resamples)])
    return {"measured": measured, "interval": _interval(samples[np.isfinite(samples)], confidence),
            "confidence": confidence, "n": int(n_docs)}
