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


# Bytes per element of (weights, gradients, one optimizer moment, activations) per precision.
PRECISIONS = {
    "fp32": (4, 4, 4, 4),   # the lab's CPU runs: everything in fp32
    "bf16": (2, 2, 2, 2),   # pure bf16: weights, gradients and Adam moments in 16 bits
    "mixed": (4, 4, 4, 2),  # bf16/fp16 autocast over fp32 weights (Trainer bf16=True): 4+4+8 = 16 B/param
}
ESTIMATE_METHODS = ("full_ft", "lora", "qlora", "prompt_tuning", "prefix_tuning", "adapters", "frozen")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# What a training run adds on CPU whatever the model (the Trainer's objects, thread pools, BLAS and
# oneDNN workspaces): the intercept of the RSS that 3 SFTTrainer steps of a 1-layer, 8-wide Llama
# added at 512, 1,024, 2,048 and 4,096 tokens per batch (tests/_memory_probe.py tiny full_ft B 128 3,
# glibc's mmap threshold pinned as in tests/test_memory_estimate.py: 46.8, 82.0, 152.2, 292.4 MB,
# a straight line in the logit tile). On CUDA torch's allocated memory does not hold the CUDA context
# (what nvidia-smi adds on top), so 0 there.
FRAMEWORK_BASELINE_MB = {"cpu": 11.7, "cuda": 0.0}
# TRL's chunked loss (SFTTrainer with `fused_lm_head`, trl 1.16: trl.kernels.chunked_logprob) projects
# the hidden states through the LM head in tiles of at most TOKEN_CHUNK_SIZE tokens x
# _CHUNKED_LOGPROB_CHUNK_SIZE vocabulary entries; tests/test_memory_estimate.py checks these against
# the installed trl.
LOGIT_TILE = (4096, 32768)
# Tile-sized buffers alive at once in that loss. Where it has no Triton (CPU, MPS) its torch fallback
# (`_forward_tile`, `_backward_tile`) makes fp32 elementwise copies of the tile (about 8.25 by the
# source, in the backward); measured as the slope of the same tiny-model runs (vocabulary 2,048): 8.77
# (the rest is likely the projection buffer's touched pages, so the factor may move a little with the
# vocabulary). On CUDA and XPU its Triton kernels fold the projection buffer in place: one buffer,
# LOGIT_TILE[1] wide whatever the vocabulary, from the source, not measured (no GPU here).
LOGIT_TILE_BUFFERS = {"torch": 8.77, "triton": 1.0}
NF4_BITS = 4.127  # QLoRA's NF4 with double quantization: 4 bits + 0.127 bits of constants per weight


def _dims(config) -> dict:
    config = getattr(config, "get_text_config", lambda: config)()
    try:
        h, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    except AttributeError as err:
        raise ValueError(f"can't estimate memory: the model's config has no {err.name}") from None
    heads = getattr(config, "num_attention_heads", 1) or 1
    head_dim = getattr(config, "head_dim", None) or h // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    inter = getattr(config, "intermediate_size", None) or 4 * h
    return {"h": h, "layers": layers, "vocab": vocab, "heads": heads, "q": heads * head_dim,
            "kv": kv_heads * head_dim, "inter": inter,
            "tied": bool(getattr(config, "tie_word_embeddings", False))}


def _linears(d: dict) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection of one Llama-style decoder layer."""
    h, q, kv, i = d["h"], d["q"], d["kv"], d["inter"]
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def config_param_count(config) -> int:
    """Parameters of a Llama-style causal LM from its config (embeddings, projections, norms)."""
    d = _dims(config)
    per_layer = sum(a * b for a, b in _linears(d).values()) + 2 * d["h"]
    return d["vocab"] * d["h"] * (1 if d["tied"] else 2) + d["layers"] * per_layer + d["h"]


def trainable_param_count(config, method: str, *, lora_r: int = 16, lora_targets=LORA_TARGETS,
                          virtual_tokens: int = 20, bottleneck_size: int = 64,
                          adapter_targets: int = 1) -> int:
    """Trainable parameters of `method` on a Llama-style model (see `estimate_training_memory_mb`):
    LoRA r·(in + out) per targeted projection; a soft prompt n·h; a prefix n·layers·2·kv (peft,
    no reparameterisation); a bottleneck adapter 2·h·m + m + h per target per layer."""
    d = _dims(config)
    if method == "full_ft":
        return config_param_count(config)
    if method in ("lora", "qlora"):
        return d["layers"] * sum(lora_r * (a + b) for name, (a, b) in _linears(d).items()
                                 if name in lora_targets)
    if method == "prompt_tuning":
        return virtual_tokens * d["h"]
    if method == "prefix_tuning":
        return virtual_tokens * d["layers"] * 2 * d["kv"]
    if method == "adapters":
        return d["layers"] * adapter_targets * (2 * d["h"] * bottleneck_size + bottleneck_size + d["h"])
    if method == "frozen":
        return 0
    raise ValueError(f"unknown method {method!r}; one of {', '.join(ESTIMATE_METHODS)}")


def estimate_training_memory_mb(model, batch_size: int, seq_len: int, optimizer_states: int = 2, *,
                                method: str | None = None, precision: str | None = None,
                                device: str = "cpu", logits: str = "chunked", lora_r: int = 16,
                                lora_targets=LORA_TARGETS, virtual_tokens: int = 20,
                                bottleneck_size: int = 64, adapter_targets: int = 1,
                                trainable_params: int | None = None,
                                gradient_accumulation_steps: int = 1) -> dict[str, float]:
    """Predicted peak memory of training, in MB (2**20 bytes), by part, and their "total".

    `model`: a model (real or on the meta device: its parameters are counted, and without
    `method` those with `requires_grad` are the trainable ones) or a transformers config (from a
    local `config.json`, e.g. `labkit.summary.load_model_config`; nothing is downloaded). `method`:
    full_ft, lora, qlora (LoRA over a 4-bit NF4 base), prompt_tuning, prefix_tuning, adapters
    (bottleneck, `labkit.adapters`) or frozen; its trainable parameters follow
    `trainable_param_count` (or pass `trainable_params`). `precision`: fp32, bf16 (pure) or mixed
    (16-bit activations over fp32 weights; default: the model's dtype, fp32 for a config).

    The parts, after the transformers guide "Model training anatomy" (huggingface.co/docs/
    transformers/model_memory_anatomy: weights, gradients, optimizer states, forward activations,
    temporary buffers) and ZeRO (Rajbhandari et al. 2020, §3.1: mixed-precision Adam keeps
    2 + 2 + 12 = 16 bytes per parameter; here `mixed` keeps fp32 weights and gradients under
    autocast, 4 + 4 + 8 = 16 bytes; the guide counts 18 with an extra 16-bit copy of the weights):
    - weights: every parameter, at its precision; qlora: the projections at 4.127 bits (NF4 with
      double quantization, Dettmers et al. 2023), embeddings and norms at 16 bits;
    - gradients: trainable parameters only, one value each;
    - optimizer: `optimizer_states` moments per trainable parameter (2 for Adam/AdamW);
    - activations saved for the backward pass, per decoder layer and token, counted from what
      autograd saves in a Llama layer with PyTorch's SDPA attention (no s² score matrix): 8·h + 2·kv
      + 4·intermediate + heads + 2 values (norm inputs and outputs, q/k/v after RoPE, attention
      output and its log-sum-exp, the SwiGLU inputs and product); frozen projections save no
      input, so a frozen base keeps 4·h + 2·kv + 3·intermediate + heads + 2 of them when only
      inserted weights train (LoRA, adapters) and the soft prompt's gradient flows through every
      layer; prompt tuning adds its virtual tokens to the sequence;
    - logits: `"full"` b·s·vocab fp32 values three times (logits, log-softmax, its gradient; the
      model's own loss, `transformers.Trainer`), `"chunked"` (TRL's SFTTrainer, which computes
      log-probabilities in `LOGIT_TILE`s of at most 4,096 tokens × 32,768 vocabulary entries, as do
      its DPO and RLOO trainers) `LOGIT_TILE_BUFFERS` such tiles (8.77 fp32 copies on a CPU, measured;
      on CUDA one 16/32-bit buffer 32,768 entries wide whatever the vocabulary) and a few values per
      token; a plain `transformers.Trainer` (chapter 7's pretraining) or a loss written on the logits
      (chapter 8's distillation) builds the full logits: pass `logits="full"`;
    - lm_head_gradient (full fine-tuning with the chunked loss): the fp32 vocab × h gradient its backward
      allocates for the LM head while the activations are alive; with tied embeddings the embedding's
      backward adds a second one beside the finished gradients, before the two are summed;
    - no separate term for the rest of a step (forward temporaries, the activations' gradients
      during the backward pass): on the fit run outside the validation cases (labworld-base full
      fine-tuning, batch 16 × 128 tokens) the estimate came within 2% of the 302 MB measured;
    - baseline: what the framework adds whatever the model (`FRAMEWORK_BASELINE_MB`, measured).
    "total" is weights + optimizer + baseline + the larger of (activations + logits + the head's
    gradient) and (gradients + the tied embedding's second gradient): the backward pass frees the saved
    activations layer by layer as it fills the gradients (which the Trainer sets to None after each
    step), so the two do not peak together (summing them put SmolLM2-135M's full fine-tuning at 4 × 64
    tokens 24% above its measured peak). With `gradient_accumulation_steps` > 1 the gradients stay alive
    through the next micro-batch's forward, and the total is the sum.
    `accelerate estimate-memory` counts only weights (and Adam's states on top: ×4 for training)
    from a Hub model: no activations, logits or framework baseline, which is why it is far below a
    measured peak at long sequences and large batches.

    It predicts the memory the run's live tensors need at their peak (what CUDA's
    `max_memory_allocated` counts). Validated against measured peaks (RSS above the pre-run level on
    CPU, fp32, TRL's SFTTrainer) for full fine-tuning, LoRA and prompt tuning on labworld-base and
    SmolLM2-135M (the tile factor was fitted on a tiny model with labworld-base's vocabulary, so only
    SmolLM2's cases, vocabulary 49,152, test it on new shapes): tests/test_memory_estimate.py, which
    pins glibc's mmap threshold (MALLOC_MMAP_THRESHOLD_) so that freed tensors leave the RSS as they
    leave CUDA's count. Under
    glibc's default (its threshold moves up as blocks are freed, and freed heap blocks stay resident
    for reuse) a CPU run's RSS holds more than the live tensors, and how much varies from run to run:
    on the six validation runs 10-55% more, with a spread up to 30% between repeats of one run, and in
    the cpu book's chapters 3 and 4 up to about twice the estimate; a process that trained before also
    reuses freed memory, which lowers a later run's measured growth. So chapters 3 and 4, which run
    under the default and train several runs in one process, show errors of either sign. Not
    yet validated on CUDA, nor in bf16 or 4 bits. Model weights loaded before the measured block are
    not in that RSS: compare it with `total - weights`. Raises ValueError for a config without
    hidden_size, num_hidden_layers or vocab_size, or an unknown method or precision.
    """
    is_module = isinstance(model, torch.nn.Module)
    d = _dims(model.config if is_module else model)
    params = list(model.parameters()) if is_module else []
    if precision is None:
        element = params[0].element_size() if params else 4
        precision = "fp32" if element == 4 else "bf16"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")
    w_b, g_b, o_b, a_b = PRECISIONS[precision]
    total_params = sum(p.numel() for p in params) if is_module else config_param_count(model)
    if trainable_params is None:
        if method is None and is_module:
            method = "full_ft" if all(p.requires_grad for p in params) else "frozen"
            trainable_params = sum(p.numel() for p in params if p.requires_grad)
        else:
            method = method or "full_ft"
            trainable_params = trainable_param_count(
                model.config if is_module else model, method, lora_r=lora_r, lora_targets=lora_targets,
                virtual_tokens=virtual_tokens, bottleneck_size=bottleneck_size,
                adapter_targets=adapter_targets)
            if method != "full_ft":
                total_params += trainable_params
    method = method or "full_ft"
    if method == "qlora":
        linear = d["layers"] * sum(a * b for a, b in _linears(d).values())
        weights = (linear * NF4_BITS / 8 + (total_params - linear - trainable_params) * 2
                   + trainable_params * w_b)
    else:
        weights = total_params * w_b
    b, s = int(batch_size), int(seq_len)
    if method == "prompt_tuning":
        s += virtual_tokens
    tokens = b * s
    h, kv, inter, heads = d["h"], d["kv"], d["inter"], d["heads"]
    frozen_base = 4 * h + 2 * kv + 3 * inter + heads + 2  # gradient flows through frozen layers
    if method == "full_ft":
        per_token_layer = frozen_base + 4 * h + inter  # every projection saves its input
    elif method in ("lora", "qlora"):  # a targeted projection saves its input for lora_A
        targets = set(lora_targets)
        per_token_layer = (frozen_base + h * bool(targets & {"q_proj", "k_proj", "v_proj"})
                           + h * bool(targets & {"gate_proj", "up_proj"}) + inter * ("down_proj" in targets)
                           + lora_r * len(targets))
    elif method == "adapters":
        per_token_layer = frozen_base + adapter_targets * (h + 2 * bottleneck_size)
    elif method == "frozen" and trainable_params == 0:
        per_token_layer = 0  # nothing to differentiate: no activations kept
    else:  # prompt and prefix tuning, or another frozen base with a few trainable weights
        per_token_layer = frozen_base
    # outside the layers: the final norm's input, and in full fine-tuning the embedding output and
    # final norm output; LoRA and adapters leave the first norm's input unsaved (nothing below trains)
    outside = {"full_ft": 3, "lora": 0, "qlora": 0, "adapters": 0}.get(method, 1) * h * bool(per_token_layer)
    activations = d["layers"] * tokens * per_token_layer * a_b + outside * tokens * a_b
    dev = torch.device(device).type
    triton = dev in ("cuda", "xpu")  # where TRL's chunked loss runs its Triton kernels (`_use_triton`)
    if logits == "full":
        logits_bytes = 3 * tokens * d["vocab"] * 4
    elif logits == "chunked":
        rows = min(tokens, LOGIT_TILE[0])
        if triton:  # the projection buffer, allocated LOGIT_TILE[1] wide whatever the vocabulary
            tile = rows * LOGIT_TILE[1] * a_b
        else:  # the torch fallback's fp32 copies of the tile (and the buffer's touched pages)
            tile = rows * min(d["vocab"], LOGIT_TILE[1]) * 4
        logits_bytes = LOGIT_TILE_BUFFERS["triton" if triton else "torch"] * tile + 8 * tokens * 4
    else:
        raise ValueError(f"logits must be 'full' or 'chunked', got {logits!r}")
    # full fine-tuning trains the LM head: the chunked loss's backward allocates its fp32 gradient
    # (vocab x h) while the activations are alive, and with tied embeddings the embedding's backward
    # adds a second dense one at the end, beside the finished gradients, before the two are summed
    head_grad = d["vocab"] * h * 4 if method == "full_ft" and logits == "chunked" else 0
    parts = {
        "weights": weights / MB,
        "gradients": trainable_params * g_b / MB,
        "optimizer": optimizer_states * trainable_params * o_b / MB,
        "activations": activations / MB,
        "logits": logits_bytes / MB,
        "lm_head_gradient": head_grad / MB,
        "baseline": FRAMEWORK_BASELINE_MB.get(dev, 0.0),
    }
    # the saved activations and the loss's tiles are freed as the backward pass fills the gradients
    # (set to None after each optimizer step), so the two peak at different moments; with gradient
    # accumulation the gradients stay alive through the next micro-batch's forward, and all add up
    forward_side = parts["activations"] + parts["logits"] + parts["lm_head_gradient"]
    gradient_side = parts["gradients"] + parts["lm_head_gradient"] * d["tied"]
    step = (forward_side + gradient_side if gradient_accumulation_steps > 1
            else max(forward_side, gradient_side))
    parts["total"] = parts["weights"] + parts["optimizer"] + parts["baseline"] + step
    return parts


def comparable_estimate_mb(estimate: dict, memory_kind: str) -> float:
    """The part of an `estimate_training_memory_mb` result (MB) that `measure` reports as a run's
    peak of `memory_kind` (see this module's docstring): on CUDA ("cuda_max_allocated", counted
    from zero) the whole estimate; as CPU RSS ("cpu_rss", above the RSS before the block) the
    estimate less the weights, which were in memory before the run began. Chapter 3 prints it
    beside each run's measured peak. Raises ValueError for another kind (e.g. "none")."""
    if memory_kind == "cuda_max_allocated":
        return estimate["total"]
    if memory_kind == "cpu_rss":
        return estimate["total"] - estimate["weights"]
    raise ValueError(f"no estimate is comparable with memory_kind={memory_kind!r}")


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
