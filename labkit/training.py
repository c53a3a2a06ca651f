"""Resuming an interrupted training run (every chapter that trains for minutes).

The trainers checkpoint by themselves (`save_steps`); this only finds where to resume from:

    args = SFTConfig(output_dir=out, max_steps=profile.train_steps, save_steps=50, save_total_limit=1, ...)
    trainer = SFTTrainer(model=model, args=args, ...)
    trainer.train(resume_from_checkpoint=resume_checkpoint(out, args))

After a kernel restart, re-running the cell continues from the last checkpoint (weights,
optimizer, scheduler, RNG states and data position are restored by the Trainer, see
`transformers.Trainer.train(resume_from_checkpoint=...)`), and the final metrics match an
uninterrupted run (tests/test_reliability_training.py measures how closely). A finished run
is not resumed: re-running the cell after a run that completed trains again from the start,
so a rerun gives the same results as the first run.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

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
