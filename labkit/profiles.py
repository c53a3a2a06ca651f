"""Run profiles (every chapter): one set of sizes and step counts per kind of machine.

    smoke  seconds per notebook: checks that the code runs (tests, instructors' nbmake runs)
    cpu    minutes per notebook on a laptop CPU (the default without a GPU)
    gpu    the same lessons at a larger scale on one CUDA GPU (the default with one)

Pick one with `LABKIT_PROFILE=smoke|cpu|gpu`; notebooks call `get_profile()` once at the top.
A profile holds only numbers: the notebook still shows the real library call, e.g.
`SFTConfig(max_steps=profile.train_steps, learning_rate=profile.lora_lr, ...)`.
To add a field, give it a default here (the cpu value) and override it where it differs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    seed: int = 0
    train_steps: int = 150         # optimiser steps per training run
    batch_size: int = 8            # examples per step
    eval_examples: int = 200       # held-out examples scored per evaluation
    max_new_tokens: int = 32       # generation length
    lr: float = 1e-3               # default learning rate; chapters override it per method below
    pretrain_minutes: float = 40.0  # wall-clock budget for pretraining the base model (chapter 0)
    pretrain_demo_minutes: float = 1.0  # chapter 0 re-runs the recipe briefly on a corpus slice
    pretrain_demo_docs: int = 20000
    eval_limit: int = 0            # items per evaluation; 0 = all held-out items
    shots: tuple[int, ...] = (0, 1, 3, 5)      # chapter 1
    virtual_tokens: int = 16                   # chapter 2
    virtual_token_sweep: tuple[int, ...] = (1, 4, 16)
    prompt_lr: float = 3e-2
    prefix_lr: float = 1e-2
    lora_r: int = 8                            # chapter 3
    lora_ranks: tuple[int, ...] = (1, 8, 64)  # 8 is lora_r: its run is reused
    lora_lr: float = 1e-2
    full_ft_lr: float = 1e-3
    # chapter 10: a real open model (SmolLM2-135M-Instruct), tens of seconds per step on a laptop CPU
    real_eval_examples: int = 40               # word problems / entity sentences scored per strategy
    real_train_steps: int = 24                 # LoRA steps (about 10 s each on 2 CPU cores)
    real_batch_size: int = 4
    real_max_new_tokens: int = 96              # longest reply (step-by-step answers; direct ones get 24)
    real_lora_lr: float = 2e-3
    real_chapter_minutes: float = 10.0         # the chapter's time budget (a measured claim)


# Presets hold only what differs from the defaults above.
PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", train_steps=4, batch_size=2, eval_examples=8, max_new_tokens=8,
                     pretrain_minutes=0.1,  # 0.1 min = 6 s
                     pretrain_demo_minutes=0.1, pretrain_demo_docs=300, eval_limit=8, shots=(0, 3),
                     virtual_tokens=4, virtual_token_sweep=(4,), lora_ranks=(4,),
                     real_eval_examples=4, real_train_steps=2, real_batch_size=2,
                     real_max_new_tokens=8, real_chapter_minutes=3.0),
    "cpu": Profile("cpu"),
    "gpu": Profile("gpu", train_steps=1000, batch_size=32, eval_examples=1000, max_new_tokens=64,
                   virtual_token_sweep=(1, 4, 16, 64), lora_ranks=(1, 4, 16, 64),
                   real_eval_examples=200, real_train_steps=300, real_batch_size=16,
                   real_max_new_tokens=128, real_lora_lr=5e-4),
}


def get_profile(name: str | None = None) -> Profile:
    """The profile called `name`, else `$LABKIT_PROFILE`, else gpu if CUDA is available, else cpu."""
    asked = name or os.environ.get("LABKIT_PROFILE") or ""
    key = asked.strip().lower()
    if not key:
        import torch  # only needed to choose automatically

        key = "gpu" if torch.cuda.is_available() else "cpu"
    if key not in PROFILES:
        raise ValueError(f"Unknown LABKIT_PROFILE {asked!r}: choose one of {', '.join(PROFILES)}")
    return PROFILES[key]
