"""Chapter 4's measurements (labkit.forgetting, labkit.stats): paired perplexity differences over
documents, the accuracy/forgetting frontier, and forgetting compared at matched accuracy. The
per-document NLL behind them is tested in tests/test_likelihood.py."""
import math

import numpy as np
import pytest

from labkit.forgetting import (
    forgetting_at_matched_accuracy,
    frontier_at,
    interpolation_gap,
    least_forgetting_at,
)
from labkit.stats import perplexity_difference


def test_perplexity_difference_is_paired_over_documents():
    tokens = [10.0] * 50
    base = [20.0] * 50
    worse = [25.0] * 50  # every document 0.5 nats/token worse
    est = perplexity_difference(worse, base, tokens)
    assert est["measured"] == pytest.approx(math.exp(2.5) - math.exp(2.0))
    assert est["interval"][0] == pytest.approx(est["measured"]) and est["n"] == 50
    noisy = [20.0 + (3.0 if i % 2 else -3.0) for i in range(50)]  # no rise on average
    assert perplexity_difference(noisy, base, tokens)["interval"][0] < 0 < perplexity_difference(
        noisy, base, tokens)["interval"][1]
    with pytest.raises(ValueError, match="same documents"):
        perplexity_difference([1.0], [1.0, 2.0], [1.0])


def test_frontier_keeps_the_best_points_and_interpolates_between_them():
    # (accuracy, forgetting): (0.5, 3.0) is beaten by (0.6, 1.0) and must be ignored.
    x, y = [0.2, 0.5, 0.6, 1.0, 1.0], [0.0, 3.0, 1.0, 5.0, 2.0]
    assert frontier_at(x, y, 0.6) == pytest.approx(1.0)
    assert frontier_at(x, y, 0.8) == pytest.approx(1.5)   # halfway from (0.6, 1) to (1.0, 2)
    assert frontier_at(x, y, 1.0) == pytest.approx(2.0)   # the better of the two runs at 1.0
    assert frontier_at(x, y, 0.4) == pytest.approx(0.5)   # halfway from (0.2, 0) to (0.6, 1)
    assert frontier_at(x, y, 0.1) == 0.0 and frontier_at(x, y, 1.5) == 2.0  # flat beyond the ends


def test_interpolation_gap_is_the_distance_between_the_frontier_points_read():
    # A training curve: (0.5, 3.0) is beaten by (0.6, 1.0), so at 0.55 the frontier reads between
    # 0.2 and 0.6 (gap 0.4), not between 0.5 and 0.6 (0.1, the broken variant that ignores the frontier).
    x, y = [0.0, 0.2, 0.5, 0.6, 0.9, 1.0], [0.0, 0.5, 3.0, 1.0, 1.5, 2.0]
    assert interpolation_gap(x, y, 0.55) == pytest.approx(0.4)
    assert interpolation_gap(x, y, 0.95) == pytest.approx(0.1)
    assert interpolation_gap(x, y, 0.9) == 0.0                        # a point measured right there
    assert interpolation_gap(x, y, 1.2) == float("inf")               # beyond the best accuracy reached
    assert interpolation_gap([0.3, 0.8], [1.0, 2.0], 0.1) == float("inf")  # below the lowest one
    with pytest.raises(ValueError, match="equal length"):
        interpolation_gap([0.1, 0.2], [1.0], 0.1)


def test_least_forgetting_reads_a_measured_point_in_the_window():
    # a training curve that passes 0.9 twice: (0.92, 3.0) early, (0.95, 2.0) later;
    # (1.0, 0.5) lies outside [0.9, 0.98]
    x, y = [0.0, 0.5, 0.92, 0.85, 0.95, 1.0], [0.0, 1.0, 3.0, 1.5, 2.0, 0.5]
    assert least_forgetting_at(x, y, 0.9, 0.08) == 2.0  # not 1.5 (below the level), 0.5 (above the window)
    assert least_forgetting_at(x, y, 0.9, 0.1) == 0.5       # the window's upper edge counts
    assert least_forgetting_at(x, y, 0.9, 0.0) != least_forgetting_at(x, y, 0.9, 0.0)  # NaN: nothing at 0.9
    with pytest.raises(ValueError, match="width"):
        least_forgetting_at(x, y, 0.9, -0.1)


def test_forgetting_at_matched_accuracy_finds_the_method_that_forgets_more():
    rng = np.random.default_rng(0)
    items, docs = 200, 100
    tokens = rng.integers(20, 60, docs).astype(float)
    base_nll = tokens * 0.5
    correct = lambda p: (rng.random(items) < p).astype(float)  # noqa: E731

    def nll(rise_per_token):
        return base_nll + tokens * rise_per_token + rng.normal(0, 0.5, docs)

    # Method A forgets twice as much as B for the same accuracy.
    accs = [0.3, 0.6, 0.9]
    a_correct, b_correct = [correct(p) for p in accs], [correct(p) for p in accs]
    a_nll, b_nll = [nll(0.2 * p) for p in accs], [nll(0.1 * p) for p in accs]
    est = forgetting_at_matched_accuracy(a_correct, a_nll, b_correct, b_nll, base_nll, tokens, level=0.6,
                                         n_resamples=300)
    assert est["measured"] > 0 and est["interval"][0] > 0 and est["n"] == docs
    same = forgetting_at_matched_accuracy(a_correct, a_nll, a_correct, a_nll, base_nll, tokens, level=0.6,
                                          n_resamples=50)
    assert same["measured"] == 0 and same["interval"] == [0.0, 0.0]
    swapped = forgetting_at_matched_accuracy(b_correct, b_nll, a_correct, a_nll, base_nll, tokens, level=0.6,
                                             base_correct=correct(0.0), n_resamples=300)
    assert swapped["interval"][1] < 0
    windowed = forgetting_at_matched_accuracy(a_correct, a_nll, b_correct, b_nll, base_nll, tokens,
                                              level=0.55, width=0.1, n_resamples=300)
    assert windowed["measured"] > 0 and windowed["interval"][0] > 0
    with pytest.raises(ValueError, match="no measured point"):
        forgetting_at_matched_accuracy(a_correct, a_nll, b_correct, b_nll, base_nll, tokens,
                                       level=0.95, width=0.02)
    with pytest.raises(ValueError, match="same test items"):
        forgetting_at_matched_accuracy(
            a_correct, a_nll, [c[:10] for c in b_correct], b_nll, base_nll, tokens, 0.6
        )
