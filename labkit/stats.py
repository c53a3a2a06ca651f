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
                          confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                          seed: int = 0) -> dict:
    """ppl_a - ppl_b on the same documents, with a paired bootstrap over documents: claim kwargs.

    `nll_a`, `nll_b`: per-document summed negative log-likelihood (nats) of two models, shape
    (n,); `tokens`: tokens scored per document, shape (n,) (`labkit.likelihood.document_nll`
    gives both). Perplexity is exp(sum nll / sum tokens), as in `labkit.likelihood.perplexity`.
    Raises ValueError when the lists differ in length."""
    a, b, t = _as_array(nll_a, "nll_a"), _as_array(nll_b, "nll_b"), _as_array(tokens, "tokens")
    if not a.size == b.size == t.size:
        raise ValueError(f"per-document lists must cover the same documents: {a.size}, {b.size}, {t.size}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, t.size, size=(n_resamples, t.size))
    diffs = _perplexity(a[idx], t[idx]) - _perplexity(b[idx], t[idx])
    return {"measured": float(_perplexity(a, t) - _perplexity(b, t)),
            "interval": _interval(diffs, confidence), "confidence": confidence, "n": int(t.size)}


# ---- timings taken in turns (chapter 8) -------------------------------------------------------
def median_ratio_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE,
                          n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """Median of the per-pair ratios a[i] / b[i], with a percentile bootstrap over the pairs: claim
    kwargs. Made for timings taken in turns (repeat i times system A, then B, under the same
    machine load): the ratio of a pair cancels a slowdown both shared, and the median ignores
    the odd repeat a busy machine stretched. Introduced in chapter 8 (teacher / student seconds
    per token). `a`, `b`: shape (n,), positive. Raises ValueError when the lists differ in length
    or a value of `b` is not positive."""
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired timings must cover the same repeats: len(a)={x.size}, len(b)={y.size}")
    if np.any(y <= 0):
        raise ValueError("median_ratio_interval: every value of b must be positive")
    ratios = x / y
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, ratios.size, size=(n_resamples, ratios.size))
    return {"measured": float(np.median(ratios)),
            "interval": _interval(np.median(ratios[idx], axis=1), confidence),
            "confidence": confidence, "n": int(ratios.size)}


def seeds_paired_difference(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]],
                            confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                            seed: int = 0) -> dict:
    """mean(a) - mean(b) for two methods each trained with the same seeds and scored on the same
    items, with a two-level bootstrap that resamples both the training seeds and the test items:
    claim kwargs, `n` = items. `a[k][i]`: the score of method A's run with seed k on item i, shape
    (seeds, items); seed k of A is paired with seed k of B (same data order, same start). The
    interval therefore covers the run-to-run spread as well as the choice of items (Bouthillier
    et al. 2021, "Accounting for Variance in Machine Learning Benchmarks"). Introduced in chapter
    8. Raises ValueError when the shapes differ or are not 2-D."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 2 or x.shape != y.shape or x.size == 0:
        raise ValueError(f"expected two (seeds, items) arrays of one shape, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("per-item scores must be finite numbers")
    d = x - y                                                   # (seeds, items)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, d.shape[0], size=(n_resamples, d.shape[0]))
    items = rng.integers(0, d.shape[1], size=(n_resamples, d.shape[1]))
    per_seed = np.take_along_axis(d[seeds], items[:, None, :], axis=2)    # (resamples, seeds, items)
    return {"measured": float(d.mean()), "interval": _interval(per_seed.mean(axis=(1, 2)), confidence),
            "confidence": confidence, "n": int(d.shape[1])}
