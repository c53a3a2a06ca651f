"""labkit.results: claims, schema validation with clear messages, atomic writes, loading; results
files keep each claim's truth (non-finite numbers, older schema versions, edited verdicts)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import labkit.results as results_mod
from labkit.profiles import PROFILES
from labkit.results import SCHEMA_VERSION, Results, ResultsError, load_results, schema, validate

SHARED_SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "contracts" / "results.schema.json"


def _run(name="lora r=8", **changes):
    run = {"name": name, "method": "lora", "base_model": "labworld-base", "trainable_params": 8192,
           "total_params": 2_000_000, "train_examples": 64, "wall_time_s": 1.5,
           "peak_memory_mb": 120.0, "memory_kind": "cpu_rss", "metrics": {"accuracy": 0.75},
           "loss_history": [[1, 2.5], [2, 2.1]]}
    return {**run, **changes}


def _results(profile="smoke"):
    r = Results("03_lora", "LoRA / PEFT", profile)
    r.add_run(_run())
    r.claim("fewer_params", "LoRA trains under 1% of the weights", 0.41, 1.0, "<")
    return r


def test_schema_copy_matches_the_shared_contract():
    if not SHARED_SCHEMA.exists():
        pytest.skip(f"no shared contract at {SHARED_SCHEMA}")
    assert schema() == json.loads(SHARED_SCHEMA.read_text())


def test_written_file_validates_and_loads_back(tmp_path):
    path = _results(PROFILES["smoke"]).write(tmp_path)
    assert path == tmp_path / "smoke" / "03_lora.json"
    doc = json.loads(path.read_text())
    jsonschema.Draft202012Validator(schema()).validate(doc)
    assert doc["schema_version"] == 1 and doc["profile"] == "smoke"
    assert doc["claims"] == [{"id": "fewer_params", "text": "LoRA trains under 1% of the weights",
                              "measured": 0.41, "threshold": 1.0, "comparison": "<", "holds": True}]
    assert load_results("smoke", tmp_path) == {"03_lora": doc}
    assert load_results("cpu", tmp_path) == {}


def test_default_folder_is_paths_results_dir(tmp_path, monkeypatch):
    monkeypatch.setattr("labkit.paths.RESULTS_DIR", tmp_path)
    assert _results().write() == tmp_path / "smoke" / "03_lora.json"
    assert list(load_results("smoke")) == ["03_lora"]


@pytest.mark.parametrize("measured, threshold, comparison, holds", [
    (2.0, 1.0, ">", True), (1.0, 1.0, ">", False), (1.0, 1.0, ">=", True), (0.5, 1.0, ">=", False),
    (0.5, 1.0, "<", True), (1.0, 1.0, "<", False), (1.0, 1.0, "<=", True), (1.0, 1.0, "==", True),
    (1.5, 1.0, "==", False), (None, 1.0, ">=", False), (float("nan"), 1.0, "<", False),
    (1.0, None, ">=", False),
])
def test_claim_computes_holds(measured, threshold, comparison, holds):
    r = Results("x", "y", "cpu")
    assert r.claim("c", "text", measured, threshold, comparison) is holds
    assert r.claims[-1]["holds"] is holds


def test_rerunning_a_cell_replaces_instead_of_duplicating():
    r = _results()
    r.add_run(_run(wall_time_s=9.0))
    r.claim("fewer_params", "again", 2.0, 1.0, "<")
    assert len(r.runs) == 1 and r.runs[0]["wall_time_s"] == 9.0
    assert len(r.claims) == 1 and r.claims[0]["holds"] is False


def test_unknown_comparison_is_rejected():
    with pytest.raises(ValueError, match="comparison must be one of"):
        Results("x", "y", "cpu").claim("c", "t", 1.0, 1.0, "!=")


def test_missing_required_field_is_named():
    doc = _results().to_dict()
    del doc["runs"]
    with pytest.raises(ResultsError, match=r"^results file \(in memory\): missing required field 'runs'$"):
        validate(doc)


def test_missing_nested_field_is_named_with_its_path():
    doc = _results().to_dict()
    del doc["runs"][0]["wall_time_s"]
    with pytest.raises(ResultsError, match=r"missing required field 'runs\[0\]\.wall_time_s'"):
        validate(doc, "results/smoke/03_lora.json")


def test_wrong_value_is_named():
    doc = _results().to_dict()
    doc["runs"][0]["memory_kind"] = "gpu_ram"
    with pytest.raises(ResultsError, match=r"field 'runs\[0\]\.memory_kind'"):
        validate(doc)


def test_invalid_results_are_not_written(tmp_path):
    r = Results("03_lora", "LoRA / PEFT", "smoke")  # no runs: the schema asks for at least one
    with pytest.raises(ResultsError, match="'runs'"):
        r.write(tmp_path)
    assert not (tmp_path / "smoke" / "03_lora.json").exists()


def _crash_in_dump(obj, f, **kwargs):
    f.write('{"schema_version": 1, "chap')  # half a file, then the process "dies"
    raise KeyboardInterrupt("simulated crash")


def _crash_in_replace(src, dst):
    raise OSError("simulated crash")


@pytest.mark.parametrize("target, crash", [("json.dump", _crash_in_dump),
                                           ("os.replace", _crash_in_replace)])
def test_crash_while_writing_keeps_the_previous_file(tmp_path, monkeypatch, target, crash):
    path = _results().write(tmp_path)
    before = path.read_text()
    monkeypatch.setattr(f"{results_mod.__name__}.{target}", crash)
    r = _results()
    r.add_run(_run("second run"))
    with pytest.raises((KeyboardInterrupt, OSError), match="simulated crash"):
        r.write(tmp_path)
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["03_lora.json"]  # no temp file left


def test_load_results_names_a_broken_file(tmp_path):
    path = _results().write(tmp_path)
    doc = json.loads(path.read_text())
    del doc["claims"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=r"03_lora\.json: missing required field 'claims'"):
        load_results("smoke", tmp_path)


def test_verdict_reads_a_claim_back():
    from labkit.results import Results

    r = Results("00_x", "x", "smoke")
    r.claim("a_beats_b", "A beats B", measured=0.42, threshold=0.0, comparison=">",
            interval=[0.31, 0.53], confidence=0.95, n=100)
    r.claim("small", "small", measured=3.0, threshold=2.0, comparison="<")
    assert r.verdict("a_beats_b") == "+0.42 (95% interval +0.31 to +0.53, n=100) vs > 0: holds"
    assert r.verdict("small").endswith("does NOT hold")
    with pytest.raises(KeyError):
        r.verdict("missing")


# ---- non-finite numbers, older schema versions, edited verdicts ----------------------------------
def _results_without_claims():
    r = Results("03_lora", "LoRA / PEFT", "smoke")
    r.add_run(_run())
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
    r = _results_without_claims()
    assert r.claim("c", "text", measured, threshold, comparison) is holds
    path = r.write(tmp_path)
    claim = json.loads(path.read_text())["claims"][0]
    assert claim["measured"] is None and claim["holds"] is holds
    assert claim["measured_nonfinite"] == str(measured)
    assert load_results("smoke", tmp_path)["03_lora"]["claims"][0]["holds"] is holds


def test_finite_claims_have_no_nonfinite_marker():
    r = _results_without_claims()
    r.claim("c", "text", 2.0, 1.0, ">")
    assert "measured_nonfinite" not in r.claims[0]


def test_a_verdict_that_does_not_follow_from_its_numbers_is_named():
    r = _results_without_claims()
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
    path = _results_without_claims().write(tmp_path)
    doc = json.loads(path.read_text())
    doc["schema_version"] = version
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=r"03_lora\.json: " + advice):
        load_results("smoke", tmp_path)


def test_a_truncated_results_file_is_named(tmp_path):
    path = _results_without_claims().write(tmp_path)
    path.write_text(path.read_text()[:40])
    with pytest.raises(ResultsError, match=r"03_lora\.json: not valid JSON .* re-run its notebook"):
        load_results("smoke", tmp_path)


def test_claim_record_returns_the_entry_and_names_unknown_ids():
    r = Results("00_x", "x", "smoke")
    r.claim("a", "A", 1.0, 0.0, ">")
    r.claim("b", "B", -1.0, 0.0, ">")
    assert r.claim_record("b")["holds"] is False and r.claim_record("a")["holds"] is True
    with pytest.raises(KeyError, match="recorded: a, b"):
        r.claim_record("c")


def test_a_kernel_imports_jsonschema_without_the_iri_parsers_and_still_validates():
    """labkit.results imports jsonschema without rfc3987_syntax (1.3 s of Earley parsers per kernel,
    for a format the schema does not use); the schema still refuses a bad document, and a later
    `import rfc3987_syntax` still works."""
    code = ("import sys, labkit.results as r\n"
            "assert 'rfc3987_syntax' not in sys.modules, 'rfc3987_syntax was imported'\n"
            "try:\n    r.validate({'schema_version': 1})\nexcept r.ResultsError:\n    pass\n"
            "else:\n    raise SystemExit('a bad document passed')\n"
            "import rfc3987_syntax\nprint('ok')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
