"""Intervals behind comparative claims: a difference inside the noise must not hold."""
import json

import numpy as np
import pytest

from labkit.results import Results
from labkit.stats import mean_interval, paired_difference, ratio_interval


def test_paired_difference_of_identical_systems_is_zero_with_zero_width():
    a = [1.0, 0.0, 1.0, 1.0]
    est = paired_difference(a, a)
    assert est["measured"] == 0.0 and est["interval"] == [0.0, 0.0] and est["n"] == 4


def test_paired_bootstrap_is_narrower_than_unpaired_when_items_agree():
    # b equals a except on 5 of 200 items: the paired interval is tight around 0.025.
    a = [float(i % 2) for i in range(200)]
    b = list(a)
    for i in range(0, 10, 2):
        b[i] = 1.0 - b[i]  # 5 items where a=0 flip to b=1... and a wins elsewhere
    est = paired_difference(b, a)
    assert est["measured"] == pytest.approx(0.025)
    low, high = est["interval"]
    assert 0.0 <= low <= 0.025 <= high <= 0.06


def test_small_noisy_difference_does_not_hold_but_large_one_does():
    a = [1.0] * 52 + [0.0] * 48  # 0.52
    b = [1.0] * 48 + [0.0] * 52  # 0.48, disagreeing on 4 items only... plus reshuffle
    b = b[50:] + b[:50]          # unrelated items: a noisy +0.04
    results = Results("t", "t", "smoke")
    assert not results.claim("noisy", "a beats b", threshold=0.0, comparison=">", **paired_difference(a, b))
    assert results.claims[-1]["measured"] == pytest.approx(0.04)
    assert results.claims[-1]["interval"][0] < 0 < results.claims[-1]["interval"][1]
    clear = [1.0] * 90 + [0.0] * 10
    assert results.claim("clear", "a beats b", threshold=0.0, comparison=">", **paired_difference(clear, b))
    assert results.claims[-1]["n"] == 100 and results.claims[-1]["confidence"] == 0.95


def test_upper_bound_decides_a_less_than_claim():
    results = Results("t", "t", "smoke")
    assert not results.claim(
        "c", "x below 1", measured=0.9, threshold=1.0, comparison="<", interval=[0.8, 1.1]
    )
    assert results.claim("d", "x below 1", measured=0.9, threshold=1.0, comparison="<", interval=[0.8, 0.95])


def test_mean_interval_covers_the_mean_and_rejects_bad_input():
    est = mean_interval([0.0, 1.0] * 50)
    assert est["interval"][0] < 0.5 < est["interval"][1]
    with pytest.raises(ValueError, match="non-empty"):
        mean_interval([])
    with pytest.raises(ValueError, match="same items"):
        paired_difference([1.0], [1.0, 0.0])


def test_ratio_interval():
    est = ratio_interval([1.0] * 90 + [0.0] * 10, [1.0] * 100)
    assert est["measured"] == pytest.approx(0.9)
    assert est["interval"][0] < 0.9 < est["interval"][1] <= 1.0
    with pytest.raises(ValueError, match="undefined"):
        ratio_interval([1.0], [0.0])


def test_interval_validates_against_schema(tmp_path):
    from labkit.measure import Measurement

    results = Results("t", "t", "smoke")
    results.add_run(Measurement("r").as_run(method="baseline", base_model="m", trainable_params=0,
                                            total_params=1, train_examples=0, base_model_sha256="ab" * 32))
    results.claim(
        "c", "a beats b", threshold=0.0, comparison=">", **paired_difference([1.0, 1.0], [0.0, 1.0])
    )
    doc = json.loads(results.write(tmp_path).read_text())
    assert doc["claims"][0]["interval"][1] >= doc["claims"][0]["interval"][0]
    assert doc["runs"][0]["base_model_sha256"] == "ab" * 32


def test_median_ratio_interval_pairs_the_repeats_and_ignores_an_outlier():
    from labkit.stats import median_ratio_interval

    load = np.linspace(1.0, 5.0, 21)                  # the machine slows down during the measurement
    student = 0.01 * load
    teacher = 1.6 * student
    est = median_ratio_interval(teacher, student)
    assert est["measured"] == pytest.approx(1.6) and est["interval"] == pytest.approx([1.6, 1.6])
    # an unpaired ratio (a resample of each list on its own) would mix slow and fast repeats
    rng = np.random.default_rng(0)
    unpaired = [np.median(rng.choice(teacher, 21)) / np.median(rng.choice(student, 21)) for _ in range(200)]
    assert max(unpaired) - min(unpaired) > 0.5
    teacher_busy = teacher.copy()
    teacher_busy[3] *= 50                             # one repeat stalled by another process
    busy = median_ratio_interval(teacher_busy, student)
    assert busy["measured"] == pytest.approx(1.6)     # a mean of the ratios would move to about 5.9
    assert np.mean(teacher_busy / student) > 4
    with pytest.raises(ValueError):
        median_ratio_interval([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        median_ratio_interval([1.0], [0.0])


def test_median_ratio_interval_is_wide_when_the_ratios_scatter():
    from labkit.stats import median_ratio_interval

    rng = np.random.default_rng(1)
    student = np.full(15, 0.01)
    teacher = student * rng.uniform(1.2, 2.0, 15)
    est = median_ratio_interval(teacher, student)
    low, high = est["interval"]
    assert low < est["measured"] < high and high - low > 0.1
    assert 1.2 <= low and high <= 2.0


def test_seeds_paired_difference_widens_when_seeds_disagree():
    from labkit.stats import seeds_paired_difference

    rng = np.random.default_rng(0)
    b = (rng.random((3, 200)) < 0.3).astype(float)
    agree = seeds_paired_difference(np.stack([b[k] + 0.2 for k in range(3)]), b)
    assert agree["measured"] == pytest.approx(0.2) and agree["interval"] == pytest.approx([0.2, 0.2])
    assert agree["n"] == 200
    # one lucky seed carries the gain: the item-only interval (seeds averaged first) excludes 0,
    # the two-level one does not
    lucky = b + np.array([[0.6], [0.0], [0.0]])
    item_only = paired_difference(lucky.mean(axis=0), b.mean(axis=0))
    both = seeds_paired_difference(lucky, b)
    assert item_only["interval"][0] > 0.1
    assert both["measured"] == pytest.approx(0.2) and both["interval"][0] <= 0.0 + 1e-12
    with pytest.raises(ValueError):
        seeds_paired_difference(b, b[:2])
    with pytest.raises(ValueError):
        seeds_paired_difference(b[0], b[0])
