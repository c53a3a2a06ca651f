"""Uncertainty for the claims ledger (every chapter): a comparison on a few hundred test items
with one seed is a coin toss unless it carries an interval.

    a = [float(o == ans) for o, ans in zip(outputs_lora, answers)]   # per-item scores, same items
    b = [float(o == ans) for o, ans in zip(outputs_base, answers)]
    results.claim("lora_beats_base", "LoRA beats the base", threshold=0.0, comparison=">",
                  **paired_difference(a, b))

Each helper returns the keyword arguments of `Results.claim` (`measured`, `interval`,
`confidence`, `n`); the claim then holds only when the whole interval clears the threshold.
Method: the percentile bootstrap over test items (Efron & Tibshirani 1993, ch. 13), paired so
that both systems are resampled on the same items (Koehn 2004, "Statistical Significance Tests
for Machine Translation Evaluation").
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000


def _as_array(scores: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(list(scores), dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty list of per-item scores, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: per-item scores must be finite numbers")
    return arr


def _interval(samples: np.ndarray, confidence: float) -> list[float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail], method="nearest")  # no inf - inf = nan
    return [float(low), float(high)]


def mean_interval(scores: Sequence[float], confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                  seed: int = 0) -> dict:
    """Mean of per-item `scores` (shape (n,)) with a bootstrap interval: claim kwargs."""
    x = _as_array(scores, "scores")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    return {"measured": float(x.mean()), "interval": _interval(x[idx].mean(axis=1), confidence),
            "confidence": confidence, "n": int(x.size)}


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE,
                      n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """mean(a) - mean(b) over the same items (a[i], b[i] score item i), with a paired bootstrap
    interval: claim kwargs. Raises ValueError when the lists differ in length."""
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired scores must cover the same items: len(a)={x.size}, len(b)={y.size}")
    return mean_interval(x - y, confidence, n_resamples, seed)


def ratio_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE,
                   n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """mean(a) / mean(b) over the same items, paired bootstrap interval (e.g. "LoRA keeps 90% of
    full fine-tuning's accuracy"): claim kwargs. A resample with mean(b) == 0 counts as +inf."""
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired scores must cover the same items: len(a)={x.size}, len(b)={y.size}")
    if y.mean() == 0:
        raise ValueError("ratio_interval: mean(b) is 0, the ratio is undefined")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    num, den = x[idx].mean(axis=1), y[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(den > 0, num / np.where(den > 0, den, 1), np.inf)
    interval = _interval(ratios, confidence)
    if not np.isfinite(interval[1]):  # mean(b) was 0 in over a tail of the resamples
        raise ValueError("ratio_interval: mean(b) is 0 in too many resamples for a finite interval; "
                         "compare with paired_difference(a, [r * b_i for b_i in b]) instead")
    return {"measured": float(x.mean() / y.mean()), "interval": interval,
            "confidence": confidence, "n": int(x.size)}


# ---- perplexity and forgetting (chapter 4) --------------------------------------------------
def _perplexity(nll: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """exp(sum nll / sum tokens) along the last axis."""
    return np.exp(nll.sum(axis=-1) / tokens.sum(axis=-1))


def perplexity_difference(nll_a: Sequence[float], nll_b: Sequence[float], tokens: Sequence[float],
                          confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """ppl_a - ppl_b on the same documents, with a paired bootstrap over documents: claim kwargs.

    `nll_a`, `nll_b`: per-document summed negative log-likelihood (nats) of two models, shape
    (n,); `tokens`: tokens scored per document, shape (n,) (`labkit.evaluate.document_nll`
    gives both). Perplexity is exp(sum nll / sum tokens), as in `labkit.evaluate.perplexity`.
    Raises ValueError when the lists differ in length."""
    a, b, t = _as_array(nll_a, "nll_a"), _as_array(nll_b, "nll_b"), _as_array(tokens, "tokens")
    if not a.size == b.size == t.size:
        raise ValueError(f"per-document lists must cover the same documents: {a.size}, {b.size}, {t.size}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, t.size, size=(n_resamples, t.size))
    diffs = _perplexity(a[idx], t[idx]) - _perplexity(b[idx], t[idx])
    return {"measured": float(_perplexity(a, t) - _perplexity(b, t)), "interval": _interval(diffs, confidence),
            "confidence": confidence, "n": int(t.size)}


def frontier_at(x: Sequence[float], y: Sequence[float], level: float) -> float:
    """y at x = `level` on the frontier of the points (x[i], y[i]) where higher x and lower y
    are better (e.g. x = task accuracy, y = forgetting): the points no other point beats on
    both, joined by straight lines, flat beyond the end points. So "the least y seen at
    x = level", interpolated between runs."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1 or xs.size == 0:
        raise ValueError(f"frontier_at: x and y must be non-empty lists of equal length, got {xs.shape}, {ys.shape}")
    keep_x, keep_y, best = [], [], np.inf
    for i in np.lexsort((ys, -xs)):  # highest x first; for equal x, lowest y first
        if ys[i] < best:
            keep_x.append(xs[i])
            keep_y.append(ys[i])
            best = ys[i]
    return float(np.interp(level, keep_x[::-1], keep_y[::-1]))


def forgetting_at_matched_accuracy(correct_a, nll_a, correct_b, nll_b, base_nll, tokens, level: float,
                                   base_correct=None, confidence: float = CONFIDENCE,
                                   n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """Method A's perplexity rise minus method B's, each read off its frontier (`frontier_at`)
    at task accuracy `level`, with a bootstrap interval: claim kwargs.

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
            values.append(frontier_at(acc, rise, level))
        return values[0] - values[1]

    rng = np.random.default_rng(seed)
    n_items, n_docs = ca.shape[1], t.size
    samples = np.array([difference(rng.integers(0, n_items, n_items), rng.integers(0, n_docs, n_docs))
                        for _ in range(n_resamples)])
    return {"measured": float(difference(np.arange(n_items), np.arange(n_docs))),
            "interval": _interval(samples, confidence), "confidence": confidence, "n": int(n_docs)}
