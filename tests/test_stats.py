"""Intervals behind comparative claims: a difference inside the noise must not hold."""
import json

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
