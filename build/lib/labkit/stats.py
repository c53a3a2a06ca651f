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
    low, high = np.percentile(samples, [tail, 100 - tail])
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
    return {"measured": float(x.mean() / y.mean()), "interval": _interval(ratios, confidence),
            "confidence": confidence, "n": int(x.size)}
