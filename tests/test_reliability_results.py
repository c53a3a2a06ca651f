"""Results files keep each claim's truth: non-finite numbers, older schema versions, edited verdicts."""
import json
import math

import pytest

from labkit.results import SCHEMA_VERSION, Results, ResultsError, load_results, validate


def _results():
    r = Results("03_lora", "LoRA / PEFT", "smoke")
    r.add_run({"name": "run", "method": "lora", "base_model": "labworld-base", "trainable_params": 1,
               "total_params": 2, "train_examples": 1, "wall_time_s": 1.0, "peak_memory_mb": 1.0,
               "memory_kind": "cpu_rss", "metrics": {}})
    return r


@pytest.mark.parametrize("threshold", [math.inf, -math.inf, math.nan])
def test_non_finite_threshold_is_rejected(threshold):
    with pytest.raises(ValueError, match="claim 'c': threshold must be a finite number"):
        Results("x", "y", "cpu").claim("c", "text", 1.0, threshold, "<")


@pytest.mark.parametrize("measured, comparison, threshold, holds", [
    (math.inf, ">", 100.0, True),     # a perplexity that overflowed is above 100: true
    (math.inf, "<", 10.0, False),
    (-math.inf, "<", 0.0, True),
    (math.nan, ">", 0.0, False),      # NaN holds for nothing
    (math.nan, "<", 0.0, False),
])
def test_non_finite_measured_keeps_its_verdict_through_the_file(tmp_path, measured, comparison,
                                                                threshold, holds):
    r = _results()
    assert r.claim("c", "text", measured, threshold, comparison) is holds
    path = r.write(tmp_path)
    claim = json.loads(path.read_text())["claims"][0]
    assert claim["measured"] is None and claim["holds"] is holds
    assert claim["measured_nonfinite"] == str(measured)
    assert load_results("smoke", tmp_path)["03_lora"]["claims"][0]["holds"] is holds


def test_finite_claims_have_no_nonfinite_marker():
    r = _results()
    r.claim("c", "text", 2.0, 1.0, ">")
    assert "measured_nonfinite" not in r.claims[0]


def test_a_verdict_that_does_not_follow_from_its_numbers_is_named():
    r = _results()
    r.claim("ok", "text", 2.0, 1.0, ">")
    r.claim("inf", "text", math.inf, 1.0, ">")
    r.claim("ci", "text", 2.0, 1.0, ">", interval=[0.5, 3.0])  # the low end does not clear 1
    doc = r.to_dict()
    validate(doc)
    for i in range(3):
        edited = json.loads(json.dumps(doc))
        edited["claims"][i]["holds"] = not edited["claims"][i]["holds"]
        with pytest.raises(ResultsError, match=rf"field 'claims\[{i}\]\.holds'"):
            validate(edited)
    lost = json.loads(json.dumps(doc))
    del lost["claims"][1]["measured_nonfinite"]  # inf written as a bare null: the verdict is unfounded
    with pytest.raises(ResultsError, match=r"claims\[1\]\.holds' is True, but claim 'inf'"):
        validate(lost)


@pytest.mark.parametrize("version, advice", [
    (0, r"written by an older labkit \(schema_version 0; this labkit reads version 1\)\. "
        r"Re-run notebooks/03_lora\.ipynb"),
    (SCHEMA_VERSION + 1, r"written by a newer labkit .*\(git pull\)"),
    ("1", r"field 'schema_version' must be the integer 1, got '1'"),
])
def test_results_file_from_another_schema_version_says_what_to_do(tmp_path, version, advice):
    path = _results().write(tmp_path)
    doc = json.loads(path.read_text())
    doc["schema_version"] = version
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=r"03_lora\.json: " + advice):
        load_results("smoke", tmp_path)


def test_a_truncated_results_file_is_named(tmp_path):
    path = _results().write(tmp_path)
    path.write_text(path.read_text()[:40])
    with pytest.raises(ResultsError, match=r"03_lora\.json: not valid JSON .* re-run its notebook"):
        load_results("smoke", tmp_path)
