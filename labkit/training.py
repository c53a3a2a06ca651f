"""The training arguments every chapter shares (introduced in chapter 2, reused from chapter 3 on).

    args = sft_config(profile, output_dir=work / name, learning_rate=profile.lora_lr, max_length=256)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer)

`sft_config` returns TRL's own `SFTConfig`, not a wrapper: the profile supplies the numbers
(steps, batch size, seed), the lab's device rule supplies `use_cpu`, and any keyword overrides
them. Print it in a notebook to see every argument the trainer receives.
"""
from __future__ import annotations

from pathlib import Path

from .profiles import Profile
from .runtime import train_on_cpu


def sft_config(profile: Profile, output_dir: str | Path, **overrides):
    """A `trl.SFTConfig` for one run of `profile` (TRL docs: SFTTrainer / SFTConfig).

    Defaults: `max_steps=profile.train_steps`, `per_device_train_batch_size=profile.batch_size`,
    about 20 loss points per run, no checkpoints, no loggers, fp32 (`bf16=False`: TRL's default
    bf16 runs slower on a CPU), no activation checkpointing (it drops a prefix-tuning cache),
    `use_cpu=labkit.runtime.train_on_cpu(profile)` and `seed=profile.seed`. Raises TypeError,
    as SFTConfig does, for an argument it does not know."""
    from trl import SFTConfig

    args = dict(output_dir=str(output_dir), max_steps=profile.train_steps,
                per_device_train_batch_size=profile.batch_size,
                logging_steps=max(1, profile.train_steps // 20), save_strategy="no", report_to=[],
                bf16=False, activation_checkpointing=False, use_cpu=train_on_cpu(profile),
                seed=profile.seed)
    args.update(overrides)
    return SFTConfig(**args)
