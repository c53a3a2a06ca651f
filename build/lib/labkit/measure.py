"""One way to measure every run (every chapter): time, peak memory, tokens, parameters,
size on disk, and the loss curve.

    with measure("lora r=8") as m:
        trainer.train()
        m.tokens = n_train_tokens
    run = m.as_run(method="lora", base_model=..., trainable_params=..., total_params=...,
                   train_examples=len(train_ds), loss_history=history.losses)

Peak memory is what the block added on top of what was there before it:
- CPU (`memory_kind="cpu_rss"`): the process's resident memory (RSS) is sampled every few
  milliseconds by a background thread while the block runs, plus once at its end; the peak is
  reported above the RSS just before the block.
- CUDA (`"cuda_max_allocated"`): torch's peak allocated memory during the block, counted from
  zero, so it includes the model weights already on the GPU.
MB here means 2**20 bytes.
"""
from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
import torch
from transformers import TrainerCallback

MB = 2**20


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


@dataclass
class Measurement:
    """What `measure` recorded; `tokens` is set by the caller (tokens trained on or generated)."""
    name: str
    wall_time_s: float = 0.0
    peak_memory_mb: float = 0.0
    memory_kind: str = "none"
    tokens: int | None = None

    @property
    def tokens_per_s(self) -> float | None:
        if self.tokens is None or self.wall_time_s <= 0:
            return None
        return self.tokens / self.wall_time_s

    def as_run(self, *, method: str, base_model: str, trainable_params: int, total_params: int,
               train_examples: int, name: str | None = None, metrics: dict | None = None,
               loss_history: list | None = None, artifact_mb: float | None = None,
               steps: int | None = None, train_tokens: int | None = None,
               base_model_sha256: str | None = None) -> dict:
        """One entry of the results file's `runs` list (see labkit/schema/results.schema.json).
        `train_tokens` defaults to `tokens` when the run trained on examples. JSON has no NaN:
        a non-finite metric is stored as null, and non-finite losses are left out of the curve."""
        if train_tokens is None and train_examples > 0:
            train_tokens = self.tokens
        run = {
            "name": name or self.name,
            "method": method,
            "base_model": base_model,
            "trainable_params": int(trainable_params),
            "total_params": int(total_params),
            "train_examples": int(train_examples),
            "wall_time_s": round(self.wall_time_s, 4),
            "peak_memory_mb": round(self.peak_memory_mb, 2),
            "memory_kind": self.memory_kind,
            "metrics": {k: _finite(v) for k, v in (metrics or {}).items()},
        }
        if base_model_sha256:
            run["base_model_sha256"] = base_model_sha256
        optional = {"train_tokens": train_tokens, "steps": steps, "artifact_mb": artifact_mb,
                    "tokens_per_s": self.tokens_per_s}
        for key, value in optional.items():
            if value is not None:
                run[key] = int(value) if key in ("train_tokens", "steps") else round(float(value), 6)
        if loss_history is not None:
            run["loss_history"] = [[int(step), float(loss)] for step, loss in loss_history
                                   if math.isfinite(loss)]
        return run


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc `malloc_trim`), so the
    RSS baseline of the next measured block is not inflated by an earlier run's leftovers —
    without it, a second run can reuse freed pages and look cheaper than the first."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): RSS stays a little optimistic
        pass


class _RssSampler(threading.Thread):
    """Samples this process's RSS every `interval` seconds until stopped; keeps the maximum."""

    def __init__(self, interval: float = 0.002):
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self._stop_event = threading.Event()

    def sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.sample()  # the final sample, while the block's objects are still alive
        return self.peak


@contextmanager
def measure(name: str, tokens: int | None = None,
            device: torch.device | str | None = None) -> Iterator[Measurement]:
    """Time the block and record its peak memory on `device` (default: CUDA if available)."""
    m = Measurement(name=name, tokens=tokens)
    cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        m.memory_kind = "cuda_max_allocated"
    else:
        release_freed_memory()
        baseline = psutil.Process().memory_info().rss
        sampler = _RssSampler()
        sampler.start()
        m.memory_kind = "cpu_rss"
    start = time.perf_counter()
    try:
        yield m
    finally:
        if cuda:
            torch.cuda.synchronize()
            m.wall_time_s = time.perf_counter() - start
            m.peak_memory_mb = torch.cuda.max_memory_allocated() / MB
        else:
            m.wall_time_s = time.perf_counter() - start
            m.peak_memory_mb = max(0, sampler.stop() - baseline) / MB


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; shared (tied) weights count once. Works on peft models:
    a LoRA adapter or a soft prompt counts as trainable, the frozen base as total only."""
    params = list(model.parameters())  # deduplicated by torch
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, sum(p.numel() for p in params)


def artifact_mb(path: str | Path, pattern: str | None = None) -> float:
    """Size on disk of a file, or of the files under a folder (only those matching `pattern`,
    e.g. `artifact_mb(out_dir, pattern="adapter_model.safetensors")` for the adapter alone)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / MB
    if not path.is_dir():
        raise FileNotFoundError(f"nothing to measure at {path}")
    files = [f for f in path.rglob(pattern or "*") if f.is_file()]
    if pattern and not files:
        raise FileNotFoundError(f"no file matching {pattern!r} under {path}")
    return sum(f.stat().st_size for f in files) / MB


class LossHistory(TrainerCallback):
    """Collects the training loss as (step, loss) pairs, and eval_loss separately, from any
    `transformers.Trainer` or TRL trainer: `Trainer(..., callbacks=[history])`. Use one per run;
    set `logging_steps=1` for a point per step."""

    def __init__(self) -> None:
        self.losses: list[tuple[int, float]] = []
        self.eval_losses: list[tuple[int, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.losses.append((state.global_step, float(logs["loss"])))
        if "eval_loss" in logs:
            self.eval_losses.append((state.global_step, float(logs["eval_loss"])))


def fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's name and bytes: equal fingerprints mean bit-identical weights
    (chapters 1 and 2 check that prompting and soft prompts leave the base untouched)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
