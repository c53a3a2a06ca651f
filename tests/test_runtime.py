"""labkit.runtime: device choice, seeding, quiet libraries, the environment record."""
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

from labkit.results import schema
from labkit.runtime import environment, get_device, quiet, seed_everything

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
