"""Interrupted training resumes to the same result; the same seed gives the same run."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from labkit.training import resume_checkpoint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import _tiny_training  # noqa: E402

# Stated tolerance: a resumed run restores weights, optimizer, scheduler, RNG states and the data
# position, so on the same machine and thread count its losses match the uninterrupted run's to
# float32 rounding; 1e-5 (relative) leaves room for that and nothing else.
TOLERANCE = 1e-5


def _train_in_subprocess(out_dir, *extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(HERE / "_tiny_training.py"), str(out_dir), *extra],
                          capture_output=True, text=True, env=env, timeout=900)


def _result(proc) -> dict:
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(line[-1][len("RESULT "):])


def test_a_killed_run_resumes_from_its_last_checkpoint_and_ends_where_an_uninterrupted_run_ends(tmp_path):
    whole = _result(_train_in_subprocess(tmp_path / "whole"))
    assert whole["resumed_from"] is None and len(whole["losses"]) == _tiny_training.MAX_STEPS

    killed = _train_in_subprocess(tmp_path / "killed", "--kill-at", "7")
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL at step 7, after checkpoint-5
    assert not [ln for ln in killed.stdout.splitlines() if ln.startswith("RESULT ")]
    assert sorted(p.name for p in (tmp_path / "killed").glob("checkpoint-*")) == ["checkpoint-5"]

    resumed = _result(_train_in_subprocess(tmp_path / "killed"))
    assert resumed["resumed_from"] == "checkpoint-5"
    steps = [s for s, _ in resumed["losses"]]
    assert steps == list(range(1, _tiny_training.MAX_STEPS + 1))  # the whole curve, 1-5 from the checkpoint
    worst = max(abs(b - a) / abs(a) for (_, a), (_, b) in zip(whole["losses"], resumed["losses"]))
    print(f"largest relative loss difference, resumed vs uninterrupted: {worst:.2e}")
    for (_, a), (_, b) in zip(whole["losses"], resumed["losses"]):
        assert b == pytest.approx(a, rel=TOLERANCE)
    assert resumed["eval_loss"] == pytest.approx(whole["eval_loss"], rel=TOLERANCE)
    # Without resuming, the run would start again from step 0 with fresh weights: a real check.
    assert whole["losses"][0][1] != pytest.approx(whole["losses"][-1][1], rel=1e-2)

    # Re-running the finished run's cell trains again from scratch (no zero-step "resume").
    assert resume_checkpoint(tmp_path / "killed") is None


def test_the_same_seed_gives_the_same_run_twice_in_one_process_and_in_a_fresh_one(tmp_path):
    """A cell re-run in the same kernel, and the chapter in a fresh kernel (a new process), with
    the same seed and thread count (1) give bit-identical losses, eval loss and weights."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = _tiny_training.train(str(tmp_path / "a"))
        second = _tiny_training.train(str(tmp_path / "b"))
        other_seed = _tiny_training.train(str(tmp_path / "c"), seed=1)
    finally:
        torch.set_num_threads(threads)
    assert first["losses"] == second["losses"]  # bit-identical on one machine and thread count
    assert first["eval_loss"] == second["eval_loss"] and first["weights"] == second["weights"]
    assert other_seed["weights"] != first["weights"]  # the seed matters: the test can fail
    fresh = _result(_train_in_subprocess(tmp_path / "fresh"))
    assert fresh["threads"] == 1
    assert fresh["losses"] == [list(step) for step in first["losses"]]
    assert fresh["eval_loss"] == first["eval_loss"] and fresh["weights"] == first["weights"]


def _checkpoint(folder: Path, step: int, max_steps: int = 10, batch: int = 4, complete: bool = True):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps(
            {"global_step": step, "max_steps": max_steps, "train_batch_size": batch}))
    return str(path)


def test_resume_checkpoint_picks_the_newest_complete_checkpoint(tmp_path):
    assert resume_checkpoint(tmp_path / "absent") is None
    assert resume_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 2)
    four = _checkpoint(tmp_path, 4)
    _checkpoint(tmp_path, 10 - 4 + 2, complete=False)  # checkpoint-8: killed while saving
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text('{"global_st')
    assert resume_checkpoint(tmp_path) == four  # numeric order (not "checkpoint-10" < "checkpoint-2")


def test_resume_checkpoint_ignores_a_finished_or_different_run(tmp_path):
    _checkpoint(tmp_path, 10)
    assert resume_checkpoint(tmp_path) is None  # finished: train again

    from transformers import TrainingArguments

    other = tmp_path / "other"
    _checkpoint(other, 4, max_steps=10, batch=4)
    same = TrainingArguments(output_dir=str(other), max_steps=10, per_device_train_batch_size=4, report_to=[])
    assert resume_checkpoint(other, same) == str(other / "checkpoint-4")
    changed = TrainingArguments(output_dir=str(other), max_steps=20, per_device_train_batch_size=4, report_to=[])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resume_checkpoint(other, changed) is None
    assert "another run (max_steps 10 there, 20 now)" in str(caught[0].message)
