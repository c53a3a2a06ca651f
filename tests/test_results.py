"""labkit.results: claims, schema validation with clear messages, atomic writes, loading."""
import json
from pathlib import Path

import jsonschema
import pytest

import labkit.results as results_mod
from labkit.profiles import PROFILES
from labkit.results import Results, ResultsError, load_results, schema, validate

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
