"""A tiny Trainer run for the resume and repeatability tests (not collected by pytest).

    python tests/_tiny_training.py OUT_DIR [--kill-at STEP]   prints the run's result as JSON

With --kill-at, the process SIGKILLs itself at the end of that step (after the checkpoint at
SAVE_STEPS, before the next): like a kernel restart mid-run. Started again on the same OUT_DIR,
it resumes from the last checkpoint with labkit.training.resume_checkpoint.
"""
from __future__ import annotations

import json
import os
import signal
import sys

MAX_STEPS, SAVE_STEPS, BATCH, EXAMPLES, SEQ = 12, 5, 4, 24, 16  # 6 steps per epoch: 2 epochs


def train(out_dir: str, kill_at: int | None = None, seed: int = 0) -> dict:
    """Train a 1-layer Llama on random token sequences; resume if `out_dir` holds a checkpoint.
    Returns the per-step losses, the final eval loss and a fingerprint of the weights."""
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from labkit.measure import fingerprint, loss_history
    from labkit.runtime import quiet, seed_everything
    from labkit.training import resume_checkpoint

    from conftest import build_tiny_llama

    quiet()
    seed_everything(seed)
    generator = torch.Generator().manual_seed(1234)  # the data never depends on the seed under test
    ids = torch.randint(2, 64, (EXAMPLES + 8, SEQ), generator=generator)
    rows = [{"input_ids": r.tolist(), "labels": r.tolist()} for r in ids]
    train_ds, eval_ds = Dataset.from_list(rows[:EXAMPLES]), Dataset.from_list(rows[EXAMPLES:])
    model = build_tiny_llama(seed=seed)  # the tests' tiny Llama (conftest.py)

    class KillAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == kill_at:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    args = TrainingArguments(output_dir=out_dir, max_steps=MAX_STEPS, per_device_train_batch_size=BATCH,
                             learning_rate=1e-2, lr_scheduler_type="linear", warmup_steps=2,
                             logging_steps=1, save_steps=SAVE_STEPS, save_total_limit=2, seed=seed,
                             use_cpu=True, report_to=[], disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      callbacks=[KillAt()])
    resumed_from = resume_checkpoint(out_dir, args)
    trainer.train(resume_from_checkpoint=resumed_from)
    return {"resumed_from": resumed_from and os.path.basename(resumed_from),
            "losses": loss_history(trainer), "eval_loss": trainer.evaluate()["eval_loss"],
            "weights": fingerprint(model), "threads": torch.get_num_threads()}


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    kill = int(sys.argv[sys.argv.index("--kill-at") + 1]) if "--kill-at" in sys.argv else None
    print("RESULT " + json.dumps(train(sys.argv[1], kill_at=kill)))
