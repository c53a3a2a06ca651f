"""Issue 25 probe (kept for the record): how many fine-tuning steps each labeled-set size of chapter 7
needs before its validation exact match stops rising. Full fine-tuning of START on N rows of a domain
task drawn as the chapter draws them (the training split shuffled by SEED, its first N), with the
chapter's schedule (a linear warm-up of WARMUP steps, then constant), scoring the first 100 validation
items at the given steps. (Probes before Dec 7 took the first N rows at a constant rate, no warm-up.)

usage: python tools/dapt_budget_probe.py START N STEP [STEP ...]
       python tools/dapt_budget_probe.py --pretrain CORPUS OUT STEPS
START: "base" or a model folder (e.g. one written by --pretrain); CORPUS: a LabWorld corpus
("legal_corpus", "finance_corpus") or "tapt" (the task's training prompts, without answers).
Environment: DOMAIN (legal), LR (1e-3), SEED (0), WARMUP (a tenth of the last STEP). Run one at a
time with OMP_NUM_THREADS=1.
The numbers behind profile.dapt_ft_steps are in the comment above that field (labkit/profiles.py)."""
import os
import random
import sys
import tempfile
import time

from labkit.runtime import quiet

quiet()
from datasets import Dataset
from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments
from trl import SFTConfig, SFTTrainer

from labkit.data import load_rows
from labkit.model import load_model
from labkit.pretrain import pack
from labkit.profiles import get_profile
from labkit.runtime import same_random_stream
from labkit.scoring import completion_scores
from labkit.training import trainer_args

DOMAIN = os.environ.get("DOMAIN", "legal")
LR = float(os.environ.get("LR", 1e-3))
SEED = int(os.environ.get("SEED", 0))
profile = get_profile("cpu")


def pretrain(corpus: str, out: str, steps: int) -> None:
    """Chapter 7's continued pretraining (cosine, 10% warm-up, profile.dapt_lr) on `corpus`, into `out`."""
    model, tok = load_model()
    texts = ([r["prompt"] for r in load_rows(f"{DOMAIN}_task", "train")] if corpus == "tapt"
             else [r["text"] for r in load_rows(corpus, "train")])
    ds = Dataset.from_dict({"input_ids": pack(tok, texts, block_size=128).tolist()})
    args = trainer_args(profile, out, TrainingArguments, checkpoints=False, max_steps=steps,
                        learning_rate=profile.dapt_lr, lr_scheduler_type="cosine",
                        warmup_steps=max(1, steps // 10), disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      data_collator=DataCollatorForLanguageModeling(tokenizer=tok, mlm=False))
    t = time.time()
    trainer.train()
    trainer.save_model(out)
    tok.save_pretrained(out)
    print(f"pretrained on {corpus} for {steps} steps in {time.time() - t:.0f} s -> {out}", flush=True)


def probe(start: str, n: int, steps: list[int]) -> None:
    model, tok = load_model() if start == "base" else load_model(start)
    val = load_rows(f"{DOMAIN}_task", "validation")[:100]
    train = load_rows(f"{DOMAIN}_task", "train")
    rows = [train[i] for i in random.Random(SEED).sample(range(len(train)), len(train))[:n]]  # as chapter 7
    warmup = int(os.environ.get("WARMUP", max(1, max(steps) // 10)))

    class Score(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step in steps:
                model.eval()
                with same_random_stream():
                    scores = completion_scores(model, tok, val, max_new_tokens=8)
                model.train()
                print(f"step {state.global_step}: validation exact match {sum(scores) / len(scores):.2f}",
                      flush=True)

    args = trainer_args(profile, tempfile.mkdtemp(), SFTConfig, checkpoints=False, max_steps=max(steps),
                        learning_rate=LR, lr_scheduler_type="constant_with_warmup", warmup_steps=warmup,
                        max_length=256, disable_tqdm=True, seed=SEED)
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[Score()]).train()


if __name__ == "__main__":
    if sys.argv[1] == "--pretrain":
        pretrain(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        probe(sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3:]])
