"""The run's setting (every chapter): device, seeds, quiet libraries, and what ran where.

A notebook starts with

    quiet(); seed_everything(profile.seed); device = get_device()

and its results file records `environment()`, so every number says which machine made it.
"""
from __future__ import annotations

import logging
import os
import platform
import random
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from importlib import metadata

import numpy as np
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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels, so that a
    rerun with the same profile gives the same numbers on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)  # for worker processes started from here
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


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


def environment() -> dict:
    """What this run ran on, as the results schema's `environment` object."""
    device = get_device()
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
