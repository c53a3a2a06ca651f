"""The training arguments every chapter shares (introduced in chapter 2, reused from chapter 3 on).

    args = sft_config(profile, output_dir=work / name, learning_rate=profile.lora_lr, max_length=256)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer)

`sft_config` returns TRL's own `SFTConfig`, not a wrapper: the profile supplies the numbers
(steps, batch size, seed), the lab's device rule supplies `use_cpu`, and any keyword overrides
them. Print it in a notebook to see every argument the trainer receives.

Resuming after an interruption (a kernel restart mid-training): in `cpu` and `gpu`, `sft_config`
checkpoints `profile.checkpoints_per_run` times per run with the trainer's own arguments
(`save_strategy="steps"`, `save_steps`, `save_total_limit=1`) into a folder that outlives the kernel,
and the chapter resumes from the last complete checkpoint,

    args = sft_config(profile, output_dir=run_dir("03_lora", name, profile))
    trainer.train(resume_from_checkpoint=resume_checkpoint(args.output_dir, args))

The Trainer restores weights, optimizer, scheduler, RNG states and the data position; the
final metrics match an uninterrupted run (tests/test_reliability_training.py measures how
closely). A finished run is not resumed: re-running its cell trains again from the start, so
a rerun gives the same results as the first run.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from .profiles import Profile
from .runtime import train_on_cpu


def run_dir(notebook: str, name: str, profile: Profile, model: str | None = None) -> Path:
    """`ARTIFACTS_DIR/<profile>/runs/<model>/<notebook>/<name>`: a training run's `output_dir`
    that survives a kernel restart (a temporary folder would not), so that re-running the cell
    resumes from the run's last checkpoint. `model` defaults to the active model ($LABKIT_MODEL
    or the embedded one), so another model never resumes this one's checkpoints. `make clean`
    does not delete it; delete the folder to drop the checkpoints."""
    from .model import ARTIFACTS_DIR, resolve_model_path

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-.") or "run"

    model = model or Path(resolve_model_path()).name
    return ARTIFACTS_DIR / profile.name / "runs" / safe(model) / notebook / safe(name)


def sft_config(profile: Profile, output_dir: str | Path, **overrides):
    """A `trl.SFTConfig` for one run of `profile` (TRL docs: SFTTrainer / SFTConfig).

    Defaults: `max_steps=profile.train_steps`, `per_device_train_batch_size=profile.batch_size`,
    about 20 loss points per run, `profile.checkpoints_per_run` evenly spaced checkpoints (only
    the newest kept; none in `smoke`: see `resume_checkpoint`), no loggers, fp32 (`bf16=False`: TRL's default
    bf16 runs slower on a CPU), no activation checkpointing (it drops a prefix-tuning cache),
    `use_cpu=labkit.runtime.train_on_cpu(profile)` and `seed=profile.seed`. Raises TypeError,
    as SFTConfig does, for an argument it does not know."""
    from trl import SFTConfig

    steps = overrides.get("max_steps", profile.train_steps)  # logging and checkpoints follow the budget
    args = dict(output_dir=str(output_dir), max_steps=steps,
                per_device_train_batch_size=profile.batch_size,
                logging_steps=max(1, steps // 20), save_strategy="no", report_to=[],
                bf16=False, activation_checkpointing=False, use_cpu=train_on_cpu(profile),
                seed=profile.seed)
    if profile.checkpoints_per_run > 0:
        args.update(save_strategy="steps", save_steps=max(1, steps // profile.checkpoints_per_run),
                    save_total_limit=1)
    args.update(overrides)
    return SFTConfig(**args)


# ---- resuming an interrupted run ----------------------------------------------------------
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last: its presence marks a complete checkpoint


def _state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return None  # killed while saving: an incomplete checkpoint


def resume_checkpoint(output_dir: str | Path, args=None) -> str | None:
    """The newest complete `checkpoint-<step>` folder under `output_dir` of a run that did not
    finish, to pass as `trainer.train(resume_from_checkpoint=...)`; None to start from scratch.

    None when: there is no such folder; every checkpoint is incomplete (killed while saving);
    the newest complete one already reached its `max_steps` (the run finished); or, given the
    run's `args` (a `TrainingArguments`, `SFTConfig`, ...), the checkpoint was made with another
    `max_steps` or per-device batch size (a different run: a warning says it is ignored).
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    folders = sorted((p for p in output_dir.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)),
                     key=lambda p: int(_CHECKPOINT.match(p.name).group(1)), reverse=True)
    for folder in folders:
        state = _state(folder)
        if state is None:
            continue
        if state.get("global_step", 0) >= state.get("max_steps", 0) > 0:
            return None  # finished: train again rather than "resume" zero steps
        if args is not None:
            want = {"max_steps": getattr(args, "max_steps", None),
                    "train_batch_size": getattr(args, "per_device_train_batch_size", None)}
            differs = {k: (state.get(k), v) for k, v in want.items()
                       if v not in (None, -1) and state.get(k) not in (None, v)}
            if differs:
                said = ", ".join(f"{k} {old} there, {new} now" for k, (old, new) in differs.items())
                warnings.warn(f"Not resuming from {folder}: it belongs to another run ({said}). "
                              "Training starts from scratch.", stacklevel=2)
                return None
        return str(folder)
    return None
