"""`python -m labkit bench` (issue 28) in the smoke profile: every method trains, the file follows the
results contract, the bare-loop ratio and MFU follow from the times, and the summary leaves it out."""
from __future__ import annotations

import json

import pytest

from labkit import bench, summary
from labkit.results import Results, validate


def test_bench_runs_every_method_and_writes_a_results_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "smoke" / "bench.json"
    assert bench.main(["--profile", "smoke", "--steps", "2", "--warmup", "1", "--seq-len", "16",
                       "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    validate(doc, out)
    runs = {r["method"]: r for r in doc["runs"]}
    assert set(runs) == {"baseline", *bench.METHODS, *bench.REFERENCES}
    bare = runs["baseline"]["metrics"]
    assert bare["timed_steps"] == 2  # one timed step from each of its two runs
    for method, run in runs.items():
        m = run["metrics"]
        assert m["timed_steps"] >= 1 and m["s_per_step"] > 0, method
        assert m["tokens_per_s"] == pytest.approx(m["tokens_per_step"] / m["s_per_step"])
        assert m["ratio_to_bare_loop"] == pytest.approx(m["tokens_per_s"] / bare["tokens_per_s"])
        assert run["steps"] == 2 and run["trainable_params"] > 0, method
    assert runs["full_ft"]["trainable_params"] == runs["full_ft"]["total_params"]
    assert runs["lora"]["trainable_params"] < runs["full_ft"]["trainable_params"]
    assert runs["full_ft"]["metrics"]["tokens_per_step"] == 2 * 16  # batch x seq_len
    full = runs["full_ft"]
    peak = bare["matmul_peak_gflops"] * 1e9
    flops = 6 * full["trainable_params"] * full["metrics"]["tokens_per_s"]
    assert full["metrics"]["mfu"] == pytest.approx(flops / peak)
    claim = doc["claims"][0]
    assert claim["id"] == "trainer_overhead" and claim["measured"] == full["metrics"]["ratio_to_bare_loop"]
    printed = capsys.readouterr().out
    assert "MFU" in printed and "× the bare loop" in printed

    # the summary chapter reads chapter files only
    chapter = Results("03_lora", "LoRA / PEFT", "smoke")
    chapter.add_run({"name": "x", "method": "lora", "base_model": "m", "trainable_params": 1,
                     "total_params": 2, "train_examples": 1, "wall_time_s": 1.0, "peak_memory_mb": 1.0,
                     "memory_kind": "cpu_rss", "metrics": {}})
    chapter.write(tmp_path)
    assert set(summary.book_results("smoke", tmp_path)) == {"03_lora"}
    assert set(summary.input_digests("smoke", tmp_path)) == {"03_lora.json"}


def test_bench_needs_a_timed_step():
    with pytest.raises(ValueError, match="at least one timed step"):
        bench.BenchSetup(steps=2, warmup_steps=2, batch_size=2, seq_len=16)
