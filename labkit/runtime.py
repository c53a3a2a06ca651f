"""The run's setting (every chapter): device, seeds, quiet libraries, and what ran where.

A notebook starts with

    quiet(); profile = get_profile(); banner(profile); seed_everything(profile.seed)
    device = compute_device(profile)

and its results file records `environment()`, so every number says which machine made it.

The device rule lives here and nowhere else: `train_on_cpu(profile)` decides, `compute_device`
names the device, trainers get `use_cpu=train_on_cpu(profile)` (from `labkit.training.trainer_args`),
`pretrain.py` and `measure.measure` ask the same functions.
"""
from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata

import torch

from . import paths

_NOISY = ("transformers", "trl", "peft", "accelerate", "datasets", "huggingface_hub")


def get_device() -> torch.device:
    """CUDA if available, else Apple's MPS if available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def train_on_cpu(profile=None) -> bool:
    """The lab's one device rule: run on CUDA when a CUDA device exists, except in the `cpu`
    profile, whose point is to show what a laptop does (its times and RSS memory). Apple MPS is
    not used for training (the trainers' MPS support varies by op): it counts as CPU here.
    `profile` is a Profile, a profile name, or None for `get_profile()`."""
    if profile is None:
        from .profiles import get_profile

        profile = get_profile()
    name = getattr(profile, "name", profile)
    return name == "cpu" or not torch.cuda.is_available()


def compute_device(profile=None) -> torch.device:
    """The device this profile trains, evaluates and measures on (see `train_on_cpu`)."""
    return torch.device("cpu" if train_on_cpu(profile) else "cuda")


def banner(profile) -> None:
    """Print, at the top of a chapter, which profile made its numbers; in `smoke` a warning
    that they are not a lesson (a few steps on a few items only check that the code runs)."""
    device = compute_device(profile)
    if getattr(profile, "name", profile) == "smoke":
        print("⚠ SMOKE PROFILE: a few training steps on a handful of items, to check that the code "
              "runs. The numbers and claims on this page are not a lesson; read the cpu or gpu build.")
    print(f"profile: {profile.name} · device: {device.type} · seed: {profile.seed}")


def seed_everything(seed: int) -> None:
    """`transformers.set_seed` (Python, NumPy, torch and every CUDA device), plus deterministic
    kernels where torch has them (`warn_only`: an op without one warns instead of failing), so
    that a rerun with the same profile gives the same numbers on the same machine."""
    from transformers import set_seed

    set_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # for worker processes started from here
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    # ...without the debugging aid that comes with it: filling every new tensor with NaN before
    # use. It changes no result of correct code, and cost a quarter of chapter 3's training time
    # on a CPU (0.24 s a step instead of 0.18; PyTorch docs: torch.utils.deterministic).
    torch.utils.deterministic.fill_uninitialized_memory = False


@contextmanager
def same_random_stream():
    """Run a side computation (a check against the library, a probe) without moving the random
    streams the rest of the chapter draws from: Python's `random`, NumPy's global generator and
    torch's CPU and CUDA generators are saved before the block and restored after it, even on
    error. A Trainer built inside the block reseeds them (`transformers.set_seed`); after it,
    the chapter's later numbers are those of a run without the block."""
    import random

    import numpy as np

    state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])


def quiet() -> None:
    """Silence the library chatter that teaches nothing: dataset-map and weight-loading bars,
    info logs, and Future/User warnings from the Hugging Face stack. The Trainer's own training
    progress bar stays. Call it before importing transformers, datasets or trl if you can."""
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"      # no fork warning from tokenizers
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"    # hub downloads (optional hub models)
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["DATASETS_VERBOSITY"] = "error"
    os.environ["HF_HUB_VERBOSITY"] = "error"
    module = rf"({'|'.join(_NOISY)})(\.|$)"
    for category in (FutureWarning, UserWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=module)
    # seed_everything asks for deterministic kernels; where a GPU op has none, torch says so
    # at every step.
    warnings.filterwarnings("ignore", message=".*does not have a deterministic implementation")
    # peft's prefix tuning still passes `past_key_values` to the model (transformers 5.24 renamed it
    # `cache`); the warning is attributed to torch's module code, so the module filter above misses it.
    warnings.filterwarnings("ignore", message=r".*`past_key_values` is deprecated", category=FutureWarning)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)
    # TrainingArguments hides the training bar when its own logger is above WARNING.
    logging.getLogger("transformers.training_args").setLevel(logging.WARNING)
    # Libraries already imported read their settings once: tell them directly too.
    if "transformers" in sys.modules:
        from transformers.utils import logging as tf_logging

        tf_logging.set_verbosity_error()
        tf_logging.disable_progress_bar()  # weight loading; the Trainer's bar is separate
    if "datasets" in sys.modules:
        import datasets

        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.ROOT, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(profile=None) -> dict:
    """What this run ran on, as the results schema's `environment` object: the device is the
    profile's `compute_device` (or, without a profile, the best one present)."""
    device = compute_device(profile) if profile is not None else get_device()
    name = {"cuda": lambda: torch.cuda.get_device_name(0), "mps": lambda: "Apple MPS"}.get(
        device.type, _cpu_name)()
    env = {
        "device": device.type,
        "device_name": name,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "peft": _version("peft"),
        "trl": _version("trl"),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return {key: value for key, value in env.items() if value is not None}


def skip_rest_of_notebook(reason: str) -> None:
    """Print `reason`, then turn every later cell of this notebook into a no-op, so that a
    chapter whose prerequisite is missing (chapter 10's real model) ends cleanly, saying why,
    under Jupyter, nbmake and Jupyter Book alike, instead of failing cell after cell.
    The rest of the current cell still runs: call it last. Outside IPython: RuntimeError(reason).
    (An IPython input transformer: https://ipython.readthedocs.io/en/stable/config/inputtransforms.html)"""
    print(reason)
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = lambda: None  # noqa: E731
    shell = get_ipython()
    if shell is None:
        raise RuntimeError(reason)
    shell.input_transformers_post.append(lambda lines: [])


class OutOfMemory(torch.cuda.OutOfMemoryError):
    """Out of GPU memory, with what to try next in the message (raised by `on_cuda_oom`).
    A subclass of `torch.cuda.OutOfMemoryError`, so existing `except` clauses still catch it."""


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()  # MPS, older CUDA paths


@contextmanager
def on_cuda_oom(batch_size: int | None = None, what: str = "this run"):
    """Turn an out-of-memory error inside the block into one that says what to do:

        with on_cuda_oom(batch_size=args.per_device_train_batch_size):
            trainer.train()

    On `torch.cuda.OutOfMemoryError` (or MPS's "out of memory" RuntimeError) it frees the cached
    GPU memory and raises `OutOfMemory` suggesting half the batch size (with twice the gradient
    accumulation, to keep the effective batch) or a smaller profile. Other errors pass unchanged.
    """
    try:
        yield
    except Exception as err:
        if not _is_oom(err):
            raise
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        advice = []
        if batch_size and batch_size > 1:
            advice.append(f"a smaller batch: per_device_train_batch_size={batch_size // 2} "
                          f"with gradient_accumulation_steps doubled keeps the effective batch")
        elif batch_size == 1:
            advice.append("a shorter max_length, or gradient checkpointing (the batch is already 1)")
        advice.append("the cpu profile: LABKIT_PROFILE=cpu (smaller sizes; `python -m labkit doctor` "
                      "shows the free memory)")
        raise OutOfMemory(f"{what} ran out of GPU memory ({first}). Try "
                          + ", or ".join(advice) + ".") from err
