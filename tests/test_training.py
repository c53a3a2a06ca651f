"""labkit.training: `trainer_args` (the library's own config object for every trainer, numbers from
the profile, overridable), run folders and resuming; an interrupted run resumes to the same result
and the same seed gives the same run (a whole chapter re-run in the same kernel writing the same
results file: test_notebooks_any_model.py). resume_checkpoint never mixes runs: a re-run cell whose
learning rate, accumulation, seed, model or data changed trains from scratch with a warning."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from transformers import TrainingArguments
from trl import DPOConfig, GRPOConfig, RewardConfig, RLOOConfig, SFTConfig

from labkit.profiles import PROFILES
from labkit.runtime import train_on_cpu
from labkit.training import resume_checkpoint, trainer_args

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import _tiny_training  # noqa: E402

CONFIGS = [SFTConfig, RewardConfig, DPOConfig, RLOOConfig, GRPOConfig, TrainingArguments]
REQUIRED = {GRPOConfig: dict(num_generations=2)}  # GRPO's default (8) exceeds the profiles' batches


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_trainer_args_is_the_librarys_own_config_with_the_profiles_numbers(tmp_path, config):
    for profile in PROFILES.values():
        args = trainer_args(profile, tmp_path / profile.name, config, learning_rate=3e-2,
                            **REQUIRED.get(config, {}))
        assert type(args) is config
        assert args.max_steps == profile.train_steps
        assert args.per_device_train_batch_size == profile.batch_size
        assert args.seed == profile.seed and args.learning_rate == 3e-2
        assert args.use_cpu is train_on_cpu(profile)
        assert args.bf16 is False and args.report_to == []
        if profile.checkpoints_per_run:  # cpu and gpu: evenly spaced checkpoints, the newest kept
            assert args.save_strategy == "steps" and args.save_total_limit == 1
            assert args.save_steps == profile.train_steps // profile.checkpoints_per_run
        else:  # smoke: seconds per run, nothing to resume
            assert args.save_strategy == "no"
        unsaved = trainer_args(profile, tmp_path, config, checkpoints=False, **REQUIRED.get(config, {}))
        assert unsaved.save_strategy == "no"


def test_sft_config_is_the_default_and_keeps_trls_own_arguments(tmp_path):
    args = trainer_args(PROFILES["smoke"], tmp_path, max_length=128)
    assert type(args) is SFTConfig and args.max_length == 128


def test_checkpoints_follow_an_overridden_step_budget(tmp_path):
    cpu = PROFILES["cpu"]
    args = trainer_args(cpu, tmp_path, max_steps=40)
    assert args.save_steps == 40 // cpu.checkpoints_per_run and args.logging_steps == 2
    assert trainer_args(cpu, tmp_path, save_strategy="no").save_strategy == "no"


def test_run_dir_outlives_the_kernel_and_is_per_profile_and_run(tmp_path, monkeypatch):
    from labkit import paths
    from labkit.training import run_dir

    monkeypatch.setattr(paths, "ARTIFACTS_DIR", tmp_path)
    monkeypatch.delenv("LABKIT_MODEL", raising=False)
    a = run_dir("03_lora", "lora finance", PROFILES["cpu"])
    assert a == tmp_path / "cpu" / "runs" / "labworld-base" / "03_lora" / "lora-finance"
    assert run_dir("03_lora", "lora finance", PROFILES["gpu"]) != a
    # never resume another model's run
    assert run_dir("03_lora", "lora finance", PROFILES["cpu"], model="org/other") != a
    assert run_dir("03_lora", "lora r=8", PROFILES["cpu"]).name == "lora-r=8"


def test_overrides_win_and_unknown_names_fail(tmp_path):
    args = trainer_args(PROFILES["smoke"], tmp_path, max_steps=7, logging_steps=3)
    assert args.max_steps == 7 and args.logging_steps == 3
    with pytest.raises(TypeError):
        trainer_args(PROFILES["smoke"], tmp_path, max_seq_length=128)  # renamed in TRL
    with pytest.raises(TypeError):
        trainer_args(PROFILES["smoke"], tmp_path, TrainingArguments, max_length=128)  # an SFTConfig field


# ---- resuming and repeating a run (tests/_tiny_training.py) ------------------------------------
# Stated tolerance: a resumed run restores weights, optimizer, scheduler, RNG states and the data
# position, so on the same machine and thread count its losses match the uninterrupted run's to
# float32 rounding; 1e-5 (relative) leaves room for that and nothing else.
RESUME_TOLERANCE = 1e-5


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
        assert b == pytest.approx(a, rel=RESUME_TOLERANCE)
    assert resumed["eval_loss"] == pytest.approx(whole["eval_loss"], rel=RESUME_TOLERANCE)
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

    other = tmp_path / "other"
    _checkpoint(other, 4, max_steps=10, batch=4)
    same = TrainingArguments(output_dir=str(other), max_steps=10, per_device_train_batch_size=4, report_to=[])
    assert resume_checkpoint(other, same) == str(other / "checkpoint-4")
    changed = TrainingArguments(
        output_dir=str(other), max_steps=20, per_device_train_batch_size=4, report_to=[]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resume_checkpoint(other, changed) is None
    assert "another run (max_steps 10 there, 20 now)" in str(caught[0].message)




# ---- a re-run cell whose arguments, model or data changed trains from scratch (issue 29) ------
def _token_data():
    import torch
    from datasets import Dataset

    generator = torch.Generator().manual_seed(1234)
    ids = torch.randint(2, 64, (24, 16), generator=generator)
    return Dataset.from_list([{"input_ids": r.tolist(), "labels": r.tolist()} for r in ids])


def _resume_args(out, **changes):
    from transformers import TrainingArguments

    values = dict(output_dir=str(out), max_steps=8, per_device_train_batch_size=4, learning_rate=1e-2,
                  save_steps=4, save_total_limit=1, logging_steps=1, seed=0, use_cpu=True, report_to=[],
                  disable_tqdm=True, dataloader_num_workers=0)
    values.update(changes)
    return TrainingArguments(**values)


def _train_until(args, data, model, stop_at=None):
    """Train as a chapter's cell does; `stop_at` ends training after that step, leaving an
    unfinished run's checkpoint behind (like a kernel restart). Returns (resumed from, losses)."""
    from transformers import Trainer, TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, a, state, control, **kwargs):
            if state.global_step == stop_at:
                control.should_training_stop = True

    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[StopAt()])
    resumed = resume_checkpoint(args.output_dir, args, data=data)
    trainer.train(resume_from_checkpoint=resumed)
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return resumed, losses


@pytest.fixture
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_changed_learning_rate_trains_from_scratch_with_a_warning(tmp_path, make_tiny_llama, one_thread):
    data = _token_data()
    out = tmp_path / "run"
    # interrupted after step 4's checkpoint
    resumed, _ = _train_until(_resume_args(out), data, make_tiny_llama(), stop_at=4)
    assert resumed is None and (out / "checkpoint-4").is_dir()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same run resumes, silently
        assert resume_checkpoint(out, _resume_args(out), data=data) == str(out / "checkpoint-4")

    with pytest.warns(UserWarning, match=r"another run \(learning_rate 0.01 there, 0.05 now\)"):
        resumed, losses = _train_until(_resume_args(out, learning_rate=5e-2), data, make_tiny_llama())
    assert resumed is None
    assert losses[0][0] == 1, "trained from step 1, not from the old run's step 4"
    _, fresh = _train_until(_resume_args(tmp_path / "fresh", learning_rate=5e-2), data, make_tiny_llama())
    assert losses == fresh  # exactly a run from scratch at the new rate


@pytest.mark.parametrize("change", [dict(gradient_accumulation_steps=2), dict(seed=1),
                                    dict(lr_scheduler_type="constant"), dict(warmup_steps=3)],
                         ids=lambda c: next(iter(c)))
def test_any_argument_that_changes_the_run_is_compared(tmp_path, change):
    out = tmp_path / "run"
    assert resume_checkpoint(out, _resume_args(out)) is None  # records the run
    (out / "checkpoint-4").mkdir()
    (out / "checkpoint-4" / "trainer_state.json").write_text(
        '{"global_step": 4, "max_steps": 8, "train_batch_size": 4}'
    )
    assert resume_checkpoint(out, _resume_args(out, logging_steps=2, save_steps=2)) == str(
        out / "checkpoint-4"
    )
    name = next(iter(change))
    with pytest.warns(UserWarning, match=f"another run \\({name} "):
        assert resume_checkpoint(out, _resume_args(out, **change)) is None
    assert not (out / "checkpoint-4").exists()  # a later interruption cannot resume it either
    assert resume_checkpoint(out, _resume_args(out)) is None


def test_another_model_or_data_is_another_train_until(tmp_path):
    from datasets import Dataset

    out = tmp_path / "run"
    data = Dataset.from_list([{"text": "a"}, {"text": "b"}])
    assert resume_checkpoint(out, _resume_args(out), model="labworld-base", data=data) is None
    (out / "checkpoint-4").mkdir()
    (out / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "max_steps": 8}')
    assert resume_checkpoint(out, _resume_args(out), model="labworld-base", data=data) == str(
        out / "checkpoint-4"
    )
    with pytest.warns(UserWarning, match=r"another run \(model 'labworld-base' there, 'other' now\)"):
        assert resume_checkpoint(out, _resume_args(out), model="other", data=data) is None
    assert resume_checkpoint(out, _resume_args(out), model="other", data=data) is None
    (out / "checkpoint-4").mkdir()
    (out / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "max_steps": 8}')
    with pytest.warns(UserWarning, match=r"another run \(data "):
        assert resume_checkpoint(out, _resume_args(out), model="other",
                                 data=Dataset.from_list([{"text": "a"}, {"text": "c"}])) is None
