"""`python -m labkit bench`: every training method of the lab, timed the same way, against two
references measured in the same process.

    python -m labkit bench                          # the active profile (LABKIT_PROFILE), embedded model
    LABKIT_MODEL=data/models/smollm2-135m-instruct python -m labkit bench --steps 4 --batch-size 2 \
        --seq-len 64                                # a real model: a few small steps on a CPU

Every method trains the same model (`labkit.model.load_model`: $LABKIT_MODEL or the embedded one) on
the same data (LabWorld's general text, tokenized and cut into blocks of `seq_len` tokens), at the
same batch size, for the same number of optimiser steps, with the library trainer its chapter uses
and `labkit.training.trainer_args` (no checkpoints):

    full_ft, lora, prompt_tuning, prefix_tuning, adapters   trl.SFTTrainer (peft / labkit.adapters)
    reward_model                                            trl.RewardTrainer (pairs of blocks)
    dpo                                                     trl.DPOTrainer (pairs of blocks)
    rloo                                                    trl.RLOOTrainer (prompts = first half of a
                                                            block, completions of the other half's length,
                                                            scored by a reward model of the same base)

Per method: seconds per step (the median of the timed steps: a `TrainerCallback` takes the time
between consecutive step ends, the first `warmup_steps` are left out), tokens per second (the
tokens one step trains on ÷ that median: batch × seq_len for the SFT methods; both sequences of
each pair for reward model and DPO; prompt + sampled completion for RLOO), peak memory
(`labkit.measure.measure` around `trainer.train()`: RSS above the pre-run level on CPU, torch's
peak allocation on CUDA) and trainable parameters.

References, measured in the same process:
- a bare PyTorch loop: the same model, batches, `torch.optim.AdamW` (the Trainer's default
  optimiser, same learning rate and no weight decay), fp32, no Trainer: forward, loss, backward,
  step. Every method's throughput is given as a ratio to it (`ratio_to_bare_loop`); for full
  fine-tuning that ratio is the Trainer/TRL overhead.
- the machine's matmul peak: the best of several large square matmuls (fp32 on CPU with the
  threads torch uses here; bf16 on CUDA), in FLOP/s; MFU of full fine-tuning
  = 6 × parameters × tokens/s ÷ that peak (the 6N rule of Kaplan et al. 2020: forward 2N, backward
  4N FLOPs per token; attention's own FLOPs are left out).

A third reference, `full_ft_trainer`: full fine-tuning under `transformers.Trainer` with the model's
own loss (not a method of the lab): it separates the Trainer's own cost from that of TRL's
SFTTrainer, whose loss is a fused, chunked LM head that also computes entropy and top-1 accuracy.
The bare loop runs twice, first and last, and its timed steps are pooled: on a shared machine the
load drifts while the bench runs.

The file `results/<profile>/bench.json` (another model: `bench-<model>.json`) follows the results
contract (labkit/schema/results.schema.json): one run per method plus the bare loop, the numbers
above as metrics, and one claim: full fine-tuning's throughput is at least 0.9 × the bare loop's.
The summary chapter leaves it out (`labkit.summary.is_bench`).
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

BENCH_CHAPTER = "bench"
METHODS = ("full_ft", "lora", "prompt_tuning", "prefix_tuning", "adapters", "reward_model", "dpo", "rloo")
# Not a method of the lab: full fine-tuning under transformers.Trainer with the model's own loss,
# which splits the SFTTrainer's distance from the bare loop into the Trainer's and TRL's loss path's.
REFERENCES = ("full_ft_trainer",)
OVERHEAD_THRESHOLD = 0.9  # issue 28: Trainer full fine-tuning >= 0.9 x the bare loop


@dataclass
class BenchSetup:
    """What every method shares: steps (timed = steps - warmup_steps), rows per step, tokens per row."""
    steps: int
    warmup_steps: int
    batch_size: int
    seq_len: int

    def __post_init__(self):
        if self.steps - self.warmup_steps < 1:
            raise ValueError(f"bench needs at least one timed step: steps {self.steps}, "
                             f"warm-up {self.warmup_steps}")
        if self.seq_len < 8 or self.batch_size < 1:
            raise ValueError(f"seq_len must be >= 8 and batch_size >= 1, got {self.seq_len}, "
                             f"{self.batch_size}")


@dataclass
class MethodResult:
    name: str
    method: str
    step_s: list[float]
    tokens_per_step: float
    peak_memory_mb: float
    memory_kind: str
    trainable_params: int
    total_params: int
    wall_time_s: float
    steps: int
    extra: dict = field(default_factory=dict)

    def median_step_s(self, warmup: int) -> float:
        return statistics.median(self.step_s[warmup:])

    def tokens_per_s(self, warmup: int) -> float:
        return self.tokens_per_step / self.median_step_s(warmup)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_timer(device: torch.device):
    """A `transformers.TrainerCallback` that records the seconds between consecutive step ends
    (the first step: from its start), so each interval holds everything the trainer does per step:
    fetching and collating the batch, forward, backward, optimiser, scheduler, logging."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.step_s: list[float] = []
            self._last: float | None = None

        def on_step_begin(self, args, state, control, **kwargs):
            if self._last is None:
                _sync(device)
                self._last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            _sync(device)
            now = time.perf_counter()
            self.step_s.append(now - self._last)
            self._last = now

    return StepTimer()


# ---- the data every method trains on ------------------------------------------------------------
def token_blocks(tokenizer, setup: BenchSetup, n_blocks: int) -> list[list[int]]:
    """`n_blocks` blocks of exactly `setup.seq_len` token ids: LabWorld's general training text,
    each document followed by eos, concatenated and cut (the way chapter 7 packs its corpus)."""
    from .data import load_rows

    need = n_blocks * setup.seq_len
    ids: list[int] = []
    for row in load_rows("general", "train", required=("text",)):
        ids += tokenizer(row["text"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(ids) >= need:
            break
    if len(ids) < need:
        raise ValueError(f"LabWorld's general text holds {len(ids)} tokens; the bench needs {need}")
    return [ids[i * setup.seq_len:(i + 1) * setup.seq_len] for i in range(n_blocks)]


def _pairs(tokenizer, blocks: list[list[int]]) -> list[dict]:
    """Preference pairs made of the same blocks: prompt = a block's first half, chosen = its second
    half, rejected = the next block's second half (text, as the chapters' pair data is)."""
    half = len(blocks[0]) // 2
    decode = tokenizer.decode
    return [{"prompt": decode(b[:half]), "chosen": decode(b[half:]),
             "rejected": decode(blocks[(i + 1) % len(blocks)][half:])} for i, b in enumerate(blocks)]


def _id_tokens(dataset, columns: tuple[str, ...], max_length: int | None) -> float:
    """Mean tokens per row over the trainer's prepared dataset, summed over `columns`; a
    (prompt, completion) column pair counts min(len(prompt) + len(completion), max_length)."""
    total = 0
    for row in dataset:
        for col in columns:
            if "+" in col:
                a, b = col.split("+")
                n = len(row[a]) + len(row[b])
                total += min(n, max_length) if max_length else n
            else:
                total += len(row[col])
    return total / len(dataset)


# ---- the references ---------------------------------------------------------------------------
def matmul_peak_flops(device: torch.device, n: int | None = None, repeats: int = 5) -> dict:
    """The best FLOP/s of `repeats` square matmuls (2n³ FLOPs each) after one warm-up: fp32 on
    CPU (n=1024 by default, with the threads torch uses now), bf16 on CUDA (n=8192)."""
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    n = n or (8192 if cuda else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i:  # the first is a warm-up
            best = min(best, time.perf_counter() - start)
    return {"flops": 2 * n**3 / best, "n": n, "dtype": str(dtype).removeprefix("torch."),
            "threads": torch.get_num_threads()}


def bare_loop(model, blocks: list[list[int]], setup: BenchSetup, lr: float,
              device: torch.device) -> MethodResult:
    """Full fine-tuning without a Trainer: `setup.steps` AdamW steps on the same blocks, fp32."""
    from .measure import count_params, measure

    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    data = torch.tensor(blocks, dtype=torch.long)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    step_s = []
    with measure("bare PyTorch loop", device=device) as m:
        _sync(device)
        last = time.perf_counter()
        for step in range(setup.steps):
            rows = order[(step * setup.batch_size + torch.arange(setup.batch_size)) % len(data)]
            ids = data[rows].to(device)
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _sync(device)
            now = time.perf_counter()
            step_s.append(now - last)
            last = now
    trainable, total = count_params(model)
    return MethodResult("bare PyTorch loop", "baseline", step_s, setup.batch_size * setup.seq_len,
                        m.peak_memory_mb, m.memory_kind, trainable, total, m.wall_time_s, setup.steps)


# ---- one method -------------------------------------------------------------------------------
def _train(name: str, method: str, trainer, model, timer, tokens_per_step: float, device) -> MethodResult:
    from .measure import count_params, measure, release_freed_memory
    from .model import page_in

    page_in(trainer.model)  # weights read from their file count before the run, not inside it
    if torch.device(device).type == "cuda":  # on the CPU measure() starts with it (0.2 s a call here)
        release_freed_memory()
    with measure(name, device=device) as m:
        trainer.train()
    trainable, total = count_params(model)
    return MethodResult(name, method, timer.step_s, tokens_per_step, m.peak_memory_mb, m.memory_kind,
                        trainable, total, m.wall_time_s, trainer.state.global_step)


def run_method(method: str, profile, setup: BenchSetup, blocks, tokenizer, work: Path,
               device: torch.device) -> MethodResult:
    """Train `method` for `setup.steps` steps with its chapter's library trainer; time it."""
    from datasets import Dataset

    from .model import load_model, resolve_model_path
    from .training import trainer_args

    path = resolve_model_path()
    timer = step_timer(device)
    common = dict(checkpoints=False, max_steps=setup.steps, per_device_train_batch_size=setup.batch_size,
                  lr_scheduler_type="constant", disable_tqdm=True)

    def args_for(config, **kw):
        return trainer_args(profile, work / method, config, **{**common, **kw})

    if method in ("full_ft", "lora", "prompt_tuning", "prefix_tuning", "adapters"):
        from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model
        from trl import SFTConfig, SFTTrainer

        from . import adapters

        model = load_model()[0]
        lr = {"full_ft": profile.full_ft_lr, "lora": profile.lora_lr, "prompt_tuning": profile.prompt_lr,
              "prefix_tuning": profile.prefix_lr, "adapters": profile.adapter_lr}[method]
        if method == "lora":
            model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=profile.lora_r,
                                                     lora_alpha=2 * profile.lora_r, lora_dropout=0.0,
                                                     target_modules=list(profile.lora_target_modules)))
        elif method == "prompt_tuning":
            model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM",
                                                             num_virtual_tokens=profile.virtual_tokens))
        elif method == "prefix_tuning":
            model = get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM",
                                                             num_virtual_tokens=profile.virtual_tokens))
        elif method == "adapters":
            adapters.add_adapter(model, "bench", adapters.BottleneckConfig(bottleneck_size=16))
            adapters.set_adapter(model, "bench")
        data = Dataset.from_list([{"input_ids": b} for b in blocks])
        args = args_for(SFTConfig, learning_rate=lr, max_length=setup.seq_len)
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                             callbacks=[timer])
        tokens = _id_tokens(trainer.train_dataset, ("input_ids",), None) * setup.batch_size
    elif method == "full_ft_trainer":  # a reference: transformers.Trainer, the model's own loss
        from transformers import Trainer, TrainingArguments, default_data_collator

        model = load_model()[0]
        data = Dataset.from_list([{"input_ids": b, "labels": b} for b in blocks])
        args = args_for(TrainingArguments, learning_rate=profile.full_ft_lr)
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator,
                          callbacks=[timer])
        tokens = setup.batch_size * setup.seq_len
    elif method == "reward_model":
        from trl import RewardConfig, RewardTrainer

        args = args_for(RewardConfig, learning_rate=profile.rm_lr, max_length=2 * setup.seq_len)
        trainer = RewardTrainer(model=path, args=args,
                                train_dataset=Dataset.from_list(_pairs(tokenizer, blocks)),
                                processing_class=tokenizer, callbacks=[timer])
        model = trainer.model
        tokens = _id_tokens(trainer.train_dataset, ("chosen_ids", "rejected_ids"), None) * setup.batch_size
    elif method == "dpo":
        from trl import DPOConfig, DPOTrainer

        model = load_model()[0]
        args = args_for(DPOConfig, learning_rate=profile.dpo_lr, beta=profile.dpo_beta,
                        max_length=2 * setup.seq_len)
        trainer = DPOTrainer(model=model, ref_model=None, args=args,
                             train_dataset=Dataset.from_list(_pairs(tokenizer, blocks)),
                             processing_class=tokenizer, callbacks=[timer])
        tokens = _id_tokens(trainer.train_dataset, ("prompt_ids+chosen_ids", "prompt_ids+rejected_ids"),
                            args.max_length) * setup.batch_size
    elif method == "rloo":
        from transformers import AutoModelForSequenceClassification
        from trl import RLOOConfig, RLOOTrainer

        model = load_model()[0]
        reward_model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        reward_model.config.pad_token_id = tokenizer.pad_token_id
        half = setup.seq_len // 2
        generations = max(g for g in range(1, setup.batch_size + 1)
                          if setup.batch_size % g == 0 and g <= max(2, profile.rl_generations))
        # every completion runs to its full length (min_new_tokens), so every step samples the same tokens
        args = args_for(RLOOConfig, learning_rate=profile.rl_lr, beta=profile.rl_beta,
                        num_generations=max(2, generations), max_completion_length=half, temperature=1.0,
                        generation_kwargs={"min_new_tokens": half})
        prompts = Dataset.from_list([{"prompt": tokenizer.decode(b[:half])} for b in blocks])
        trainer = RLOOTrainer(model=model, reward_funcs=reward_model, args=args, train_dataset=prompts,
                              processing_class=tokenizer, reward_processing_classes=tokenizer,
                              callbacks=[timer])
        tokens = None  # counted by the trainer while it samples (state.num_input_tokens_seen)
    else:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the bench prints its own table, not every log line
    result = _train(method, method, trainer, model, timer, tokens or 0.0, device)
    if tokens is None:
        result.tokens_per_step = trainer.state.num_input_tokens_seen / max(1, trainer.state.global_step)
    return result


# ---- the whole bench --------------------------------------------------------------------------
def bench_setup(profile, steps=None, warmup=None, batch_size=None, seq_len=None) -> BenchSetup:
    return BenchSetup(steps=steps or profile.bench_steps,
                      warmup_steps=profile.bench_warmup_steps if warmup is None else warmup,
                      batch_size=batch_size or profile.bench_batch_size,
                      seq_len=seq_len or profile.bench_seq_len)


def run_bench(profile, setup: BenchSetup, methods=METHODS, log=print) -> dict:
    """Run the references and every method; return the results document (not yet written)."""
    from .measure import release_freed_memory
    from .model import load_model, model_info
    from .results import Results
    from .runtime import compute_device, seed_everything

    device = compute_device(profile)
    seed_everything(profile.seed)
    work = Path(tempfile.mkdtemp(prefix="labkit-bench-"))
    base, tokenizer = load_model()
    info = model_info(base)
    n_blocks = max(setup.steps * setup.batch_size, 2)
    blocks = token_blocks(tokenizer, setup, n_blocks)
    log(f"bench: {info['base_model']} · {setup.steps} steps ({setup.warmup_steps} warm-up) · batch "
        f"{setup.batch_size} × {setup.seq_len} tokens · {device.type}, {torch.get_num_threads()} threads")

    peak = matmul_peak_flops(device)
    log(f"matmul peak: {peak['flops'] / 1e9:,.1f} GFLOP/s ({peak['dtype']}, n={peak['n']})")
    bare = bare_loop(base, blocks, setup, profile.full_ft_lr, device)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    release_freed_memory()
    log(f"bare loop: {bare.median_step_s(setup.warmup_steps):.4f} s/step")
    results = [bare]
    for method in (*methods, *REFERENCES):
        seed_everything(profile.seed)
        # (no release_freed_memory() after each method: the next measured block starts with one)
        results.append(run_method(method, profile, setup, blocks, tokenizer, work, device))
        log(f"{method}: {results[-1].median_step_s(setup.warmup_steps):.4f} s/step")
    # The bare loop again, last, from the same weights: on a shared machine the load drifts during
    # the bench; the reference pools the timed steps of both runs (before and after the methods).
    base.load_state_dict(base_state)
    del base_state
    again = bare_loop(base, blocks, setup, profile.full_ft_lr, device)
    del base
    release_freed_memory()
    log(f"bare loop, again: {again.median_step_s(setup.warmup_steps):.4f} s/step")
    w = setup.warmup_steps
    bare.step_s = bare.step_s[:w] + bare.step_s[w:] + again.step_s[w:]
    bare.extra["runs"] = 2

    bare_tps = bare.tokens_per_s(setup.warmup_steps)
    doc = Results(BENCH_CHAPTER, "Bench: every training method against a bare loop", profile)
    for r in results:
        tps = r.tokens_per_s(setup.warmup_steps)
        metrics = {"tokens_per_s": tps, "s_per_step": r.median_step_s(setup.warmup_steps),
                   "tokens_per_step": r.tokens_per_step, "timed_steps": len(r.step_s) - setup.warmup_steps,
                   "ratio_to_bare_loop": tps / bare_tps, "batch_size": setup.batch_size,
                   "seq_len": setup.seq_len}
        if r.method == "full_ft":
            metrics["mfu"] = 6 * r.trainable_params * tps / peak["flops"]
        if r.method == "baseline":
            metrics.update(matmul_peak_gflops=peak["flops"] / 1e9,
                           mfu=6 * r.trainable_params * tps / peak["flops"])
        run = {"name": r.name, "method": r.method, **info, "trainable_params": r.trainable_params,
               "total_params": r.total_params, "train_examples": r.steps * setup.batch_size,
               "train_tokens": int(round(r.tokens_per_step * r.steps)), "steps": r.steps,
               "wall_time_s": round(r.wall_time_s, 4), "tokens_per_s": round(tps, 6),
               "peak_memory_mb": round(r.peak_memory_mb, 2), "memory_kind": r.memory_kind,
               "metrics": {k: float(v) for k, v in metrics.items()}}
        doc.add_run(run)
    full = next((r for r in doc.runs if r["method"] == "full_ft"), None)
    if full is not None:
        doc.claim("trainer_overhead", f"Trainer/TRL full fine-tuning reaches at least {OVERHEAD_THRESHOLD} x "
                  "the bare PyTorch loop's tokens/s (same model, batch, AdamW, fp32)",
                  measured=full["metrics"]["ratio_to_bare_loop"], threshold=OVERHEAD_THRESHOLD,
                  comparison=">=")
    out = doc.to_dict()
    out["_peak"] = peak
    return out


def table(doc: dict):
    """The bench as a pandas DataFrame, one row per run."""
    import pandas as pd

    rows = []
    for r in doc["runs"]:
        m = r["metrics"]
        rows.append({"method": r["method"], "s/step": m["s_per_step"], "tokens/s": m["tokens_per_s"],
                     "× bare loop": m["ratio_to_bare_loop"], "peak MB": r["peak_memory_mb"],
                     "trainable": r["trainable_params"], "tokens/step": m["tokens_per_step"]})
    return pd.DataFrame(rows).set_index("method")


def bench_path(profile_name: str, model_path: str, results_dir=None) -> Path:
    from . import paths

    name = Path(model_path).name
    stem = BENCH_CHAPTER if name == "labworld-base" else f"{BENCH_CHAPTER}-{name}"
    return Path(results_dir or paths.RESULTS_DIR) / profile_name / f"{stem}.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


def add_arguments(parser) -> None:
    parser.add_argument("--profile", default=None, help="smoke, cpu or gpu (default: $LABKIT_PROFILE)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimiser steps per method (default: profile)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="steps left out of the timing (default: profile)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per step (default: profile)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per row (default: profile)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default results/<profile>/bench.json; another model: "
                             "bench-<model>.json)")


def run_cli(args) -> int:
    from .runtime import quiet

    quiet()
    import pandas as pd

    from .model import resolve_model_path
    from .profiles import get_profile
    from .results import validate, write_json_atomic

    profile = get_profile(args.profile)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown method(s) {', '.join(sorted(unknown))}; choose from {', '.join(METHODS)}")
    setup = bench_setup(profile, args.steps, args.warmup, args.batch_size, args.seq_len)
    start = time.perf_counter()
    doc = run_bench(profile, setup, methods)
    peak = doc.pop("_peak")
    out = args.out or bench_path(profile.name, resolve_model_path())
    validate(doc, out)
    write_json_atomic(out, doc)
    with pd.option_context("display.width", 160, "display.float_format", "{:,.4g}".format):
        print(table(doc).to_string())
    full = next((r for r in doc["runs"] if r["method"] == "full_ft"), None)
    if full is not None:
        print(f"full fine-tuning: {full['metrics']['ratio_to_bare_loop']:.3f} × the bare loop's tokens/s; "
              f"MFU {100 * full['metrics']['mfu']:.2f}% of {peak['flops'] / 1e9:,.1f} GFLOP/s "
              f"({peak['dtype']} matmul, n={peak['n']}, {peak['threads']} threads)")
        c = doc["claims"][0]
        print(f"claim {c['id']}: {c['measured']:.3f} {c['comparison']} {c['threshold']}: "
              f"{'holds' if c['holds'] else 'does NOT hold'}")
    print(f"wrote {out} ({time.perf_counter() - start:.0f} s)")
    return 0
