"""labkit.runtime: device choice, seeding, quiet libraries, the environment record, a CUDA
out-of-memory error turned into advice."""
import dataclasses
import logging
import os
import platform
import random
import warnings

import jsonschema
import numpy as np
import pytest
import torch
import transformers
import trl

from labkit.results import schema
from labkit.runtime import (
    OutOfMemory,
    environment,
    get_device,
    on_cuda_oom,
    quiet,
    same_random_stream,
    seed_everything,
)

QUIET_ENV = ("HF_DATASETS_DISABLE_PROGRESS_BARS", "TRL_EXPERIMENTAL_SILENCE", "TOKENIZERS_PARALLELISM",
             "HF_HUB_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DISABLE_IMPLICIT_TOKEN",
             "TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", "HF_HUB_VERBOSITY")


@pytest.mark.parametrize("cuda, mps, expected", [(True, False, "cuda"), (False, True, "mps"),
                                                 (False, False, "cpu")])
def test_get_device(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert get_device() == torch.device(expected)


def _draw():
    return random.random(), float(np.random.rand()), torch.randn(3).tolist()


def test_seed_everything_repeats_every_generator(monkeypatch):
    """Via transformers.set_seed: Python, NumPy and torch all repeat."""
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # restored afterwards
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        seed_everything(123)
        first = _draw()
        seed_everything(123)
        assert _draw() == first
        seed_everything(124)
        assert _draw() != first
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


@pytest.fixture
def restore_logging(monkeypatch):
    for key in QUIET_ENV:
        monkeypatch.delenv(key, raising=False)
    tf_level = transformers.logging.get_verbosity()
    tf_bar = transformers.utils.logging.is_progress_bar_enabled()
    levels = {name: logging.getLogger(name).level
              for name in ("trl", "peft", "accelerate", "transformers.training_args")}
    yield
    transformers.logging.set_verbosity(tf_level)
    if tf_bar:
        transformers.utils.logging.enable_progress_bar()
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_quiet_silences_library_noise_but_not_user_code(restore_logging):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet()
        for module in ("transformers.trainer", "trl.trainer.sft_trainer", "peft.tuners.lora"):
            warnings.warn_explicit("library noise", FutureWarning, "lib.py", 1, module=module)
            warnings.warn_explicit("library noise", UserWarning, "lib.py", 1, module=module)
        warnings.warn_explicit("index_add_cuda_ does not have a deterministic implementation, but ...",
                               UserWarning, "graph.py", 1, module="torch.autograd.graph")
        warnings.warn_explicit("your warning", UserWarning, "nb.py", 1, module="__main__")
    assert [str(w.message) for w in caught] == ["your warning"]
    assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["TRL_EXPERIMENTAL_SILENCE"] == "1"
    assert transformers.logging.get_verbosity() == transformers.logging.ERROR
    assert not transformers.utils.logging.is_progress_bar_enabled()  # weight-loading bars
    assert logging.getLogger("trl").level == logging.ERROR
    # The Trainer's training bar is a separate tqdm that quiet() leaves on.
    args = transformers.TrainingArguments(output_dir="unused", use_cpu=True, report_to=[])
    assert args.disable_tqdm is False


def test_environment_matches_the_schema():
    env = environment()
    jsonschema.validate(env, schema()["properties"]["environment"])
    assert env["device"] == get_device().type
    assert env["torch"] == torch.__version__
    assert env["transformers"] == transformers.__version__
    assert env["python"] == platform.python_version()
    assert env["cpu_threads"] == torch.get_num_threads()
    assert env["timestamp"].startswith("20")


# ---- the one device rule ---------------------------------------------------------------------
def _fake_cuda(monkeypatch, allocated_mb: float = 123.0):
    """CUDA present, as torch would report it, without a GPU: the memory calls return numbers."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: int(allocated_mb * 2**20))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")


@pytest.mark.parametrize("profile_name, cuda, on_cpu", [
    ("smoke", True, False), ("gpu", True, False), ("cpu", True, True),
    ("smoke", False, True), ("gpu", False, True), ("cpu", False, True)])
def test_train_on_cpu_rule(monkeypatch, profile_name, cuda, on_cpu):
    from labkit.profiles import PROFILES
    from labkit.runtime import compute_device, train_on_cpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert train_on_cpu(PROFILES[profile_name]) is on_cpu
    assert train_on_cpu(profile_name) is on_cpu
    assert compute_device(PROFILES[profile_name]).type == ("cpu" if on_cpu else "cuda")


@pytest.mark.parametrize("profile_name", ["smoke", "cpu"])
def test_trainer_measure_and_results_follow_the_same_rule(monkeypatch, tmp_path, profile_name):
    """The bug this rule fixes: with CUDA present in smoke, chapter 3 trained on CPU while
    `measure` read CUDA memory (0 MB). Now the trainer's `use_cpu`, the memory `measure` reads
    and the device in the results file are one decision."""
    from labkit.measure import measure
    from labkit.profiles import PROFILES
    from labkit.runtime import train_on_cpu
    from labkit.training import trainer_args

    _fake_cuda(monkeypatch)
    # SFTConfig(use_cpu=False) would set up the (fake) GPU: a config class that only records its arguments
    recorder = dataclasses.make_dataclass(
        "Recorded",
        [(f.name, object, dataclasses.field(default=None)) for f in dataclasses.fields(trl.SFTConfig)],
    )
    monkeypatch.setenv("LABKIT_PROFILE", profile_name)
    profile = PROFILES[profile_name]
    on_cpu = train_on_cpu(profile)
    assert on_cpu is (profile_name == "cpu")
    args = trainer_args(profile, tmp_path, recorder, learning_rate=1e-3, max_length=64)
    assert args.use_cpu is on_cpu
    with measure("block") as m:  # no device given: the profile's rule
        pass
    assert m.memory_kind == ("cpu_rss" if on_cpu else "cuda_max_allocated")
    if not on_cpu:
        assert m.peak_memory_mb == pytest.approx(123.0)
    assert environment(profile)["device"] == ("cpu" if on_cpu else "cuda")


@pytest.mark.parametrize("profile_name", ["smoke", "cpu"])
def test_pretraining_uses_the_rule(monkeypatch, tmp_path, profile_name):
    """With CUDA present, `python -m labkit pretrain` trains on the GPU except in the cpu profile
    (a rule of its own, `use_cpu=not torch.cuda.is_available()`, would train the cpu profile on
    the GPU). The trainer's arguments are caught before any training starts."""
    import labkit.pretrain as pretrain

    class Caught(Exception):
        pass

    def catch(**kwargs):
        raise Caught(kwargs)

    _fake_cuda(monkeypatch)
    monkeypatch.setenv("LABKIT_PROFILE", profile_name)
    monkeypatch.setattr(pretrain, "TrainingArguments", catch)
    cfg = pretrain.PretrainConfig(steps=1, batch_size=1, block_size=16, vocab_size=300, corpus_docs=20)
    with pytest.raises(Caught) as caught:
        pretrain.pretrain(tmp_path / "model", cfg, work_dir=tmp_path / "work", log=lambda *_: None)
    assert caught.value.args[0]["use_cpu"] is (profile_name == "cpu")


def test_banner_warns_in_smoke_only(capsys):
    from labkit.profiles import PROFILES
    from labkit.runtime import banner

    banner(PROFILES["smoke"])
    assert "not a lesson" in capsys.readouterr().out
    banner(PROFILES["cpu"])
    out = capsys.readouterr().out
    assert "not a lesson" not in out and "profile: cpu" in out


def test_seed_everything_is_deterministic_without_filling_new_memory():
    """Deterministic kernels, but not the NaN-filling of every new tensor that comes with them
    (a quarter of a CPU training step's time, and no result of correct code depends on it)."""
    import torch.utils.deterministic

    from labkit.runtime import seed_everything

    seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False
    first = torch.randn(3)
    seed_everything(0)
    assert torch.equal(first, torch.randn(3))


# ---- out of memory -----------------------------------------------------------------------------
def test_cuda_oom_becomes_advice_with_a_smaller_batch():
    with pytest.raises(OutOfMemory, match=r"training ran out of GPU memory \(CUDA out of memory\. Tried to "
                                          r"allocate 2\.00 GiB\)\. Try a smaller batch: "
                                          r"per_device_train_batch_size=16 .*LABKIT_PROFILE=cpu") as caught:
        with on_cuda_oom(batch_size=32, what="training"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert isinstance(caught.value, torch.cuda.OutOfMemoryError)  # old except clauses still catch it
    assert isinstance(caught.value.__cause__, torch.cuda.OutOfMemoryError)


def test_mps_style_oom_is_caught_and_other_errors_pass_unchanged():
    with pytest.raises(OutOfMemory, match="shorter max_length"):
        with on_cuda_oom(batch_size=1):
            raise RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)")
    with pytest.raises(ValueError, match="^unrelated$"):
        with on_cuda_oom(batch_size=8):
            raise ValueError("unrelated")
    with pytest.raises(RuntimeError, match="^shape mismatch$"):
        with on_cuda_oom(batch_size=8):
            raise RuntimeError("shape mismatch")
    with on_cuda_oom(batch_size=8):
        pass  # no error, nothing raised


# ---- side computations leave the random streams alone --------------------------------------------
# ---- runtime: side computations leave the random streams alone ---------------------------------
def test_same_random_stream_restores_python_numpy_and_torch():
    def draw():
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    def seeded():
        random.seed(1), np.random.seed(1), torch.manual_seed(1)

    seeded()
    expected = draw()
    seeded()
    with same_random_stream():
        from transformers import set_seed

        set_seed(99)  # what a Trainer's constructor does
        draw()
    assert draw() == expected
