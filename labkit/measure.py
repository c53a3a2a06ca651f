"""One way to measure every run (every chapter): time, peak memory, tokens, parameters,
size on disk, and the loss curve.

    with measure("lora r=8") as m:
        trainer.train()
    run = record_run(m, model, trainer, method="lora", train_examples=len(train_ds),
                     metrics={"accuracy": accuracy})

Peak memory is what the block added on top of what was there before it:
- CPU (`memory_kind="cpu_rss"`): the peak of the process's resident memory (RSS) while the block
  runs, above the RSS just before it. On Linux it is the kernel's own peak counter (VmHWM), reset
  when the block starts: exact, and free. Elsewhere a background thread samples RSS every 10 ms
  (it can miss a spike shorter than that, and takes a little CPU from the block).
- CUDA (`"cuda_max_allocated"`): torch's peak allocated memory during the block, counted from
  zero, so it includes the model weights already on the GPU.
MB here means 2**20 bytes.
"""
from __future__ import annotations

import math
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
import torch

from .results import _number

MB = 2**20


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
            "metrics": {k: _number(v) for k, v in (metrics or {}).items()},
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


def record_run(m: Measurement, model: torch.nn.Module, trainer=None, *, method: str, train_examples: int,
               metrics: dict | None = None, name: str | None = None, artifact_mb: float | None = None,
               info: dict | None = None, train_tokens: int | None = None) -> dict:
    """The lab's one way to record a run, after `measure` timed it and the chapter scored it:

        with measure(name) as m:
            trainer.train()
        scores = completion_scores(model, tokenizer, test_rows)
        run = record_run(m, model, trainer, method="lora", train_examples=len(train_ds),
                         metrics={"accuracy": mean(scores)})

    adds the model's trainable and total parameters (`count_params`), the trainer's steps, tokens
    seen (`trainer.state.num_input_tokens_seen`, unless the block set `m.tokens`) and loss curve
    (`loss_history`), and the model's name and weights hash (`labkit.model.model_info(model)`, or
    `info` to name another, e.g. the base under a peft model) — one entry of the results file's
    `runs` list (`Measurement.as_run`; labkit/schema/results.schema.json). `trainer` is None for a
    run that only evaluates: it trained no parameter (`trainable_params` 0)."""
    from .model import model_info

    trainable, total = count_params(model)
    trainable = trainable if trainer is not None else 0
    if trainer is not None and m.tokens is None:
        m.tokens = trainer.state.num_input_tokens_seen or None
    return m.as_run(name=name, method=method, **(info if info is not None else model_info(model)),
                    trainable_params=trainable, total_params=total, train_examples=train_examples,
                    steps=trainer.state.global_step if trainer is not None else None,
                    loss_history=loss_history(trainer) if trainer is not None else None,
                    artifact_mb=artifact_mb, metrics=metrics, train_tokens=train_tokens)


def report_ranks(trainer) -> None:
    """Print one line per process of a multi-process run (`accelerate launch`, recipes/): its rank,
    distributed type, steps, effective batch (per-device batch x processes x accumulation) and a
    checksum of its trainable weights — the same on every rank under DDP, which averages the
    gradients so every copy takes the same step; under FSDP each rank sums only its shard."""
    acc, args = trainer.accelerator, trainer.args
    effective = args.per_device_train_batch_size * acc.num_processes * args.gradient_accumulation_steps
    local = [getattr(p, "to_local", lambda: p)() for p in trainer.model.parameters() if p.requires_grad]
    checksum = sum(t.detach().double().abs().sum().item() for t in local)  # this process's copy (or shard)
    print(f"rank {acc.process_index} of {acc.num_processes} ({acc.distributed_type.value}): "
          f"{trainer.state.global_step} steps x {args.per_device_train_batch_size} rows x "
          f"{args.gradient_accumulation_steps} accumulation; effective batch {effective}; "
          f"trainable-weight checksum {checksum:.9e}", flush=True)


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
    """Samples this process's RSS every `interval` seconds until stopped; keeps the maximum.
    The fallback where the kernel's own peak counter cannot be reset (`_KernelPeakRss`): a thread
    that wakes every few milliseconds takes CPU time from the block it measures."""

    def __init__(self, interval: float = 0.01):
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


class _KernelPeakRss:
    """Linux's own peak RSS (`VmHWM` in /proc/self/status), reset at the start of the block by
    writing 5 to /proc/self/clear_refs (proc(5)): exact, and it costs the block nothing. Blocks
    may nest: a reset first hands the peak so far to every block still open."""

    STATUS, CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")
    _open: list["_KernelPeakRss"] = []

    @classmethod
    def available(cls) -> bool:
        try:
            cls._reset()
            return cls._hwm() > 0
        except (OSError, ValueError):
            return False

    @classmethod
    def _hwm(cls) -> int:
        for line in cls.STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
        raise ValueError("no VmHWM line in /proc/self/status")

    @classmethod
    def _reset(cls) -> None:
        cls.CLEAR.write_text("5")

    def __init__(self):
        self.peak = 0
        hwm = self._hwm()
        for block in self._open:
            block.peak = max(block.peak, hwm)
        self._reset()
        self._open.append(self)

    def stop(self) -> int:
        self._open.remove(self)
        self.peak = max(self.peak, self._hwm())
        for block in self._open:  # an enclosing block saw this peak too
            block.peak = max(block.peak, self.peak)
        return self.peak


_KERNEL_PEAK = None  # decided on first use: can this process reset its peak RSS?


def _peak_rss_tracker():
    global _KERNEL_PEAK
    if _KERNEL_PEAK is None:
        _KERNEL_PEAK = _KernelPeakRss.available()
    if _KERNEL_PEAK:
        return _KernelPeakRss()
    sampler = _RssSampler()
    sampler.start()
    return sampler


@contextmanager
def measure(name: str, tokens: int | None = None,
            device: torch.device | str | None = None) -> Iterator[Measurement]:
    """Time the block and record its peak memory on `device` (default: the profile's
    `labkit.runtime.compute_device()`, the same rule that decides where trainers run)."""
    from .runtime import compute_device

    m = Measurement(name=name, tokens=tokens)
    cuda = torch.device(device if device is not None else compute_device()).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        m.memory_kind = "cuda_max_allocated"
    else:
        release_freed_memory()
        baseline = psutil.Process().memory_info().rss
        peak_rss = _peak_rss_tracker()
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
            m.peak_memory_mb = max(0, peak_rss.stop() - baseline) / MB


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


def loss_history(trainer_or_log) -> list[tuple[int, float]]:
    """The training loss as (step, loss) pairs, read from what every `transformers.Trainer` and
    TRL trainer already keeps: `trainer.state.log_history` (pass the trainer or that list).
    Set `logging_steps=1` for a point per step. Eval losses stay in the log as `eval_loss`."""
    log = getattr(getattr(trainer_or_log, "state", None), "log_history", trainer_or_log)
    return [(int(entry["step"]), float(entry["loss"])) for entry in log if "loss" in entry]


def fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's name and bytes: equal fingerprints mean bit-identical weights
    (chapters 1 and 2 check that prompting and soft prompts leave the base untouched)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ---- resource guards: will a training run fit? -----------------------------------------------
class MemoryWarning(UserWarning):
    """A run is unlikely to fit in the memory that is free (see `check_fits`)."""


def estimate_training_memory_mb(model: torch.nn.Module, batch_size: int, seq_len: int,
                                optimizer_states: int = 2) -> dict[str, float]:
    """Rough peak memory of one training step, in MB (2**20 bytes), by part, and their "total".

    - weights: every parameter (frozen ones too), at its own dtype;
    - gradients and optimizer state: trainable parameters only; `optimizer_states` tensors per
      parameter (2 for Adam/AdamW: first and second moments);
    - activations kept for the backward pass: per layer s·b·h·(34 + 5·a·s/h) bytes at 16 bits
      (Korthikanti et al., 2022, "Reducing Activation Recomputation in Large Transformer
      Models", eq. 1), scaled to the weights' dtype, with h = hidden_size, a = attention
      heads, s = `seq_len`, b = `batch_size`, from `model.config`; adapters (LoRA, soft prompts)
      still keep the frozen base's activations;
    - logits: b·s·vocab fp32 values, three copies (logits, log-softmax, their gradient).

    An estimate, not a measurement (tests/test_reliability_guards.py compares it with a measured
    step): allocator overhead and library workspaces come on top. Raises ValueError for a model
    whose config lacks hidden_size, num_hidden_layers or vocab_size.
    """
    config = model.config
    config = getattr(config, "get_text_config", lambda: config)()
    try:
        h, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    except AttributeError as err:
        raise ValueError(f"can't estimate memory: the model's config has no {err.name}") from None
    heads = getattr(config, "num_attention_heads", 1) or 1
    params = list(model.parameters())
    element = params[0].element_size() if params else 4
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    b, s = int(batch_size), int(seq_len)
    activation_bytes = layers * s * b * h * (34 + 5 * heads * s / h) * element / 2
    parts = {
        "weights": sum(p.numel() * p.element_size() for p in params) / MB,
        "gradients": trainable / MB,
        "optimizer": optimizer_states * trainable / MB,
        "activations": activation_bytes / MB,
        "logits": 3 * b * s * vocab * 4 / MB,
    }
    parts["total"] = sum(parts.values())
    return parts


def available_memory_mb(device: torch.device | str | None = None) -> float:
    """Free memory on `device` (default: CUDA if available, else the CPU's RAM), in MB."""
    kind = (torch.device(device).type if device is not None
            else ("cuda" if torch.cuda.is_available() else "cpu"))
    if kind == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free / MB
    return psutil.virtual_memory().available / MB  # the CPU, and Apple's MPS (shared memory)


def check_fits(estimate_mb: float | dict, device: torch.device | str | None = None,
               batch_size: int | None = None) -> bool:
    """True if `estimate_mb` (a number, or `estimate_training_memory_mb`'s dict) fits in the
    memory free on `device`; else warn with a `MemoryWarning` saying what to change, and return
    False. Call it before `trainer.train()`."""
    need = float(estimate_mb["total"] if isinstance(estimate_mb, dict) else estimate_mb)
    free = available_memory_mb(device)
    if need <= free:
        return True
    kind = (torch.device(device).type if device is not None
            else ("cuda" if torch.cuda.is_available() else "cpu"))
    smaller = (f"per_device_train_batch_size={max(1, batch_size // 2)}" if batch_size and batch_size > 1
               else "a smaller batch")
    warnings.warn(f"This run needs about {need:,.0f} MB but only {free:,.0f} MB are free on {kind}: it will "
                  f"probably run out of memory. Try {smaller} (doubling gradient_accumulation_steps keeps "
                  f"the effective batch), a shorter max_length, or a smaller profile (LABKIT_PROFILE=cpu "
                  f"or smoke).", MemoryWarning, stacklevel=2)
    return False
