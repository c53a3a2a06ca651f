"""Pretraining the embedded base model from scratch (chapter 0; `python -m labkit pretrain`).

corpus -> tokenizer -> packed blocks -> `transformers.Trainer` on a `LlamaForCausalLM`.
The schedule is a function of the step only (linear warm-up, then a cosine to `min_lr_ratio`
over `steps`), so the same command with the same thread count gives bit-identical weights on the
same machine, however busy it is (`tests/test_pretrain.py` checks it at a tiny budget).
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import (
    DataCollatorForLanguageModeling,
    LlamaForCausalLM,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from .data import load_rows
from .labworld.build import SPRINKLE_DOCS, SPRINKLE_SHARE
from .model import base_config
from .runtime import train_on_cpu
from .tokenizer import train_tokenizer


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1400              # optimiser steps: 1400 * 8,192 = 11.5M tokens (~45 min on 2 CPU threads)
    block_size: int = 256          # tokens per training sequence
    batch_size: int = 32           # sequences per step: 32 * 256 = 8,192 tokens per step
    lr: float = 3e-3
    warmup_fraction: float = 0.03  # of the steps
    min_lr_ratio: float = 0.1
    vocab_size: int = 2048
    seed: int = 0
    threads: int = 0               # torch CPU threads; 0 = torch's default (record it: results depend on it)
    snapshot_steps: int = 200      # save a usable model this often while training
    corpus_docs: int = 0           # use only the first N general documents (tests, demos); 0 = all
    max_minutes: float = 0.0       # optional wall-clock cap (chapter 0's demo); 0 = none. A capped run
                                   # stops early and so does not reproduce across machines.


def tokenizer_texts() -> list[str]:
    """The tokenizer learns from the general corpus only, like the model. Domain jargon is then
    split into pieces the model knows ("lisoprin" -> several familiar sub-words), as a real
    tokenizer splits rare terms. Trained on the domain corpora too, each drug name became one
    token that pretraining met 1-7 times, so no model could learn to copy it (the diagnosis is in
    data/labworld/README.md)."""
    return [r["text"] for r in load_rows("general", "train")]


def corpus_texts(cfg: PretrainConfig) -> list[str]:
    texts = tokenizer_texts()
    return texts[: cfg.corpus_docs] if cfg.corpus_docs else texts


def pack(tokenizer, texts: list[str], block_size: int) -> torch.Tensor:
    """Concatenate the documents, each ended by EOS, and cut the stream into equal blocks."""
    ids: list[int] = []
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids += enc + [tokenizer.eos_token_id]
    n = len(ids) // block_size
    return torch.tensor(ids[: n * block_size]).view(n, block_size)


def lr_factor(step: int, cfg: PretrainConfig) -> float:
    """Multiplier of `cfg.lr` at optimiser step `step` (0-based): linear warm-up over
    `warmup_fraction * steps`, then a cosine down to `min_lr_ratio` at `steps`."""
    warmup = max(1, round(cfg.warmup_fraction * cfg.steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(1, cfg.steps - warmup), 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Snapshots(TrainerCallback):
    """Saves a usable model every `snapshot_steps`, and stops at `max_minutes` when one is set."""

    def __init__(self, cfg: PretrainConfig, snapshot_dir: Path | None = None, tokenizer=None):
        self.cfg, self.snapshot_dir, self.tokenizer, self.start = cfg, snapshot_dir, tokenizer, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.cfg.max_minutes and time.monotonic() - self.start >= self.cfg.max_minutes * 60:
            control.should_training_stop = True
            control.should_log = True
        elif (self.snapshot_dir and self.cfg.snapshot_steps
              and state.global_step % self.cfg.snapshot_steps == 0):
            model.save_pretrained(self.snapshot_dir)
            self.tokenizer.save_pretrained(self.snapshot_dir)
        return control


def pretrain(out_dir: Path, cfg: PretrainConfig, work_dir: Path | None = None, log=print) -> dict:
    """Train tokenizer and model; save both to `out_dir` with training_log.json. Returns the log."""
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    texts = corpus_texts(cfg)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    blocks = pack(tokenizer, texts, cfg.block_size)
    log(f"tokenizer: {len(tokenizer)} tokens; corpus: {blocks.numel():,} tokens in {len(blocks):,} blocks "
        f"({time.time() - t0:.0f} s)")
    from datasets import Dataset

    train_ds = Dataset.from_dict({"input_ids": blocks.tolist()})
    config = base_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id,
                         max_position_embeddings=2 * cfg.block_size)
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: LlamaForCausalLM with {n_params:,} parameters")

    snapshots = Snapshots(cfg, Path(str(out_dir) + ".partial"), tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
    args = TrainingArguments(
        output_dir=str(work_dir or Path(out_dir).with_suffix(".trainer")),
        per_device_train_batch_size=cfg.batch_size,
        max_steps=cfg.steps, logging_steps=25, save_strategy="no", report_to=[],
        use_cpu=train_on_cpu(), seed=cfg.seed, dataloader_num_workers=0,
        max_grad_norm=1.0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, optimizers=(optimizer, scheduler),
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
                      callbacks=[snapshots])
    start = time.time()
    trainer.train()
    train_seconds = time.time() - start
    steps = trainer.state.global_step
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    history = [[h["step"], round(h["loss"], 4)] for h in trainer.state.log_history if "loss" in h]
    training_log = {
        "config": asdict(cfg), "parameters": n_params, "steps": steps,
        "command": f"python -m labkit pretrain --steps {cfg.steps} --threads {torch.get_num_threads()}",
        "tokens_seen": steps * cfg.batch_size * cfg.block_size, "corpus_tokens": int(blocks.numel()),
        "train_seconds": round(train_seconds, 1),
        "tokens_per_s": round(steps * cfg.batch_size * cfg.block_size / train_seconds),
        "final_loss": history[-1][1] if history else None, "loss_history": history,
        "hardware": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                     "torch_threads": torch.get_num_threads(), "cuda": not train_on_cpu(),
                     "torch": torch.__version__},
    }
    (out_dir / "training_log.json").write_text(json.dumps(training_log, indent=1) + "\n")
    return training_log


def write_model_card(out_dir: Path, training_log: dict, report: dict[str, float]) -> None:
    """README.md (the model card) and eval.json beside the weights: the recipe, what it saw,
    its losses and its scores on the held-out evaluation items."""
    out_dir = Path(out_dir)
    (out_dir / "eval.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    cfg, hw = training_log["config"], training_log["hardware"]
    rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in sorted(report.items()))
    (out_dir / "README.md").write_text(f"""---
library_name: transformers
pipeline_tag: text-generation
language: en
---
# labworld-base

The LLM Tuning Lab's embedded base model: a `LlamaForCausalLM` with {training_log['parameters']:,}
parameters, pretrained from scratch on the LabWorld general corpus by `python -m labkit pretrain`.
It knows LabWorld's stories, people, places and arithmetic; of finance, healthcare and legal text
it has seen only a sprinkle ({SPRINKLE_DOCS} documents each, {SPRINKLE_SHARE} of its corpus), \
and no chat-formatted instruction.

## Recipe
- Data: `data/labworld/general/train.jsonl` ({training_log['corpus_tokens']:,} tokens), \
generated by `python -m labkit data`.
- Tokenizer: byte-level BPE, {cfg['vocab_size']} tokens, digits split one per token, ChatML chat template.
- Architecture: hidden 192, 4 layers, 6 heads, MLP 512, tied embeddings, context {2 * cfg['block_size']}.
- Optimisation: AdamW (lr {cfg['lr']}, betas 0.9/0.95, weight decay 0.1), \
batch {cfg['batch_size']} x {cfg['block_size']} tokens,
  cosine schedule over {cfg['steps']:,} steps (warm-up {cfg['warmup_fraction']:.0%}), \
fp32, seed {cfg['seed']}.
- Command: `{training_log.get('command', 'python -m labkit pretrain')}` \
({hw['torch_threads']} torch threads; the same
  command on the same machine gives bit-identical weights — the thread count changes float reduction order).

## Training
- Steps: {training_log['steps']:,}; tokens seen: {training_log['tokens_seen']:,} \
({training_log['tokens_seen'] / training_log['corpus_tokens']:.1f} epochs)
- Time: {training_log['train_seconds'] / 60:.1f} minutes, {training_log['tokens_per_s']:,} tokens/s
- Final training loss: {training_log['final_loss']}; the full curve is in `training_log.json`.
- Hardware: {hw['processor']}, {hw['torch_threads']} torch threads, CUDA: {hw['cuda']}, torch {hw['torch']}.

## Evaluation (held-out items, `python -m labkit evaluate` recomputes it)
| metric | value |
|---|---|
{rows}

- `addition_*`: 3-digit sums never seen in pretraining, answered at once (direct) or digit by digit (cot).
- `icl_*`: mean exact match over 8 list tasks under instructions and example sets unlike the corpus, \
with 0 or 3 examples
  (`icl_novel_*`: the same on inputs no corpus list has).
- `instruction_zero_shot`: chat-formatted questions answered correctly (the base was never instruction-tuned).
- `ppl_*`: perplexity on held-out general text and on each domain's held-out text.

## Use
```python
from labkit.model import load_model
model, tokenizer = load_model()  # or AutoModelForCausalLM.from_pretrained("data/models/labworld-base")
```
""")
