"""Issue 9 diagnosis (kept for the record; run against a base model folder via LABKIT_MODEL):
learning curves on a domain task (exact match on 100 test items at the given steps), with ablations.
usage: python tools/domain_task_curve.py DOMAIN VARIANT LR STEP [STEP ...]
VARIANT: orig (full fine-tuning), nodistractor, knownnames, lora (q/v), lora-attn, lora-all;
a "-brief" suffix cuts the filler sentences out of full-length task documents (LabWorld v2).
Environment: LORA_R, LORA_ALPHA, BATCH (8), SCHEDULE (constant), LORAPLUS (B's rate / A's), SEED (0).
Run two at a time with OMP_NUM_THREADS=1 each."""
import json
import os
import re
import sys
import tempfile
import time

from labkit.runtime import quiet

quiet()
import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from labkit.data import load_rows
from labkit.labworld.domains import DRUGS
from labkit.labworld.world import build_world
from labkit.model import load_model
from labkit.profiles import get_profile
from labkit.scoring import completion_scores
from labkit.training import trainer_args

domain, variant, lr = sys.argv[1], sys.argv[2], float(sys.argv[3])
checkpoints = [int(s) for s in sys.argv[4:]]
SEED = int(os.environ.get("SEED", 0))
torch.manual_seed(SEED)
companies = [c.name for c in build_world(1234).companies]
swap = {d: companies[i] for i, d in enumerate(DRUGS)}

BRIEF_CUTS = [r"History of [^.]+\. ?", r"Vitals: [^.]+\. ?", r"Follow-up in \d+ weeks\. ?",
              r"Discharged in stable condition\. ?", r"Contraindications reviewed with the patient\. ?",
              r"Management reaffirmed full-year guidance despite tighter liquidity\. ?",
              r"Net income was weighed down by a one-time impairment charge\. ?",
              r"Capital expenditure rose as the fiscal year closed with strong free cash flow\. ?",
              r"Analysts expect bond yields to pressure equity valuations\. ?",
              r"The balance sheet shows leverage below the covenant threshold\. ?",
              r"Earnings per share beat consensus estimates\. ?",
              r"The dispute concerned the [a-z -]+ of the agreement\. ?",
              r"Costs were awarded hereinafter to the prevailing party\. ?",
              r"The ruling may be appealed within thirty days\. ?",
              r"The tort claim was severed from the contract claim\. ?"]


def transform(r):
    p, a = r["prompt"], r["answer"]
    if variant == "nodistractor":
        p = re.sub(r"Previously on [a-z]+ \d+ mg, discontinued due to adverse effects\. ?", "", p)
        p = re.sub(
            r"Operating margin widened to \d+ percent as EBITDA benefited from lower amortization\. ?", "", p
        )
        p = re.sub(
            r"(The claims against [A-Z]\w+ \w+ were dismissed\."
            r"|[A-Z]\w+ \w+ was found not liable under the statute\."
            r"|The appellate panel affirmed that [A-Z]\w+ \w+ bears no liability\.) ?",
            "",
            p,
        )
    if variant.endswith("brief"):  # only the answer, the distractor and one more fact per document
        for filler in BRIEF_CUTS:
            p = re.sub(filler, "", p)
    if variant == "knownnames":
        for d, c in swap.items():
            p, a = p.replace(d, c), a.replace(d, c)
    return {"prompt": p, "completion": " " + a, "answer": a}

train = [transform(r) for r in load_rows(f"{domain}_task", "train")]
test = [transform(r) for r in load_rows(f"{domain}_task", "test")][:100]
print(train[0]["prompt"], train[0]["completion"])
model, tok = load_model()
variant_model = variant.removesuffix("-brief")
if variant_model.startswith(
    "lora"
):  # lora (q/v) or lora-all (all linear layers); LORA_R, LORA_ALPHA, BATCH env
    from peft import LoraConfig, get_peft_model

    targets = {"lora-all": "all-linear", "lora-attn": ["q_proj", "k_proj", "v_proj", "o_proj"]}.get(
        variant_model, ["q_proj", "v_proj"]
    )
    r = int(os.environ.get("LORA_R", 8))
    alpha = float(os.environ.get("LORA_ALPHA", 2 * r))
    model = get_peft_model(
        model, LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=alpha, target_modules=targets)
    )
curve = []
class Eval(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step in checkpoints:
            model.eval()
            scores = completion_scores(model, tok, test)
            acc = sum(scores) / len(scores)
            model.train()
            curve.append((state.global_step, acc))
            print("STEP", state.global_step, acc, flush=True)
cfg = trainer_args(
    get_profile("cpu"),
    tempfile.mkdtemp(),
    SFTConfig,
    checkpoints=False,
    max_steps=max(checkpoints),
    per_device_train_batch_size=int(os.environ.get("BATCH", 8)),
    learning_rate=lr,
    lr_scheduler_type=os.environ.get("SCHEDULE", "constant"),
    logging_steps=50,
    max_length=256,
    disable_tqdm=True,
    seed=SEED,
)
t = time.time()
optimizers = (None, None)
if os.environ.get("LORAPLUS"):  # LoRA+ (Hayou et al. 2024): B learns LORAPLUS times faster than A
    from peft.optimizers import create_loraplus_optimizer

    optimizers = (
        create_loraplus_optimizer(
            model, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=float(os.environ["LORAPLUS"])
        ),
        None,
    )
SFTTrainer(
    model=model,
    args=cfg,
    optimizers=optimizers,
    train_dataset=Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in train]),
    processing_class=tok,
    callbacks=[Eval()],
).train()
print(
    "RESULT",
    json.dumps(
        {
            "domain": domain,
            "variant": variant,
            "lr": lr,
            "curve": curve,
            "r": os.environ.get("LORA_R"),
            "alpha": os.environ.get("LORA_ALPHA"),
            "schedule": os.environ.get("SCHEDULE"),
            "batch": os.environ.get("BATCH", "8"),
            "loraplus": os.environ.get("LORAPLUS"),
            "seed": SEED,
            "s": round(time.time() - t),
        }
    ),
)
