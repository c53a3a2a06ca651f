"""Issue 9 diagnosis (kept for the record; run against a base model folder via LABKIT_MODEL):
full fine-tuning learning curves on a domain task, with ablations.
usage: python tools/domain_task_curve.py DOMAIN orig|nodistractor|knownnames LR STEP [STEP ...]"""
import json, sys, time, re, os, tempfile
from labkit.runtime import quiet; quiet()
import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer
from transformers import TrainerCallback
from labkit.model import load_model
from labkit.data import load_rows
from labkit.evaluate import completion_accuracy
from labkit.labworld.domains import DRUGS
from labkit.labworld.world import build_world

domain, variant, lr = sys.argv[1], sys.argv[2], float(sys.argv[3])
checkpoints = [int(s) for s in sys.argv[4:]]
torch.manual_seed(0)
companies = [c.name for c in build_world(1234).companies]
swap = {d: companies[i] for i, d in enumerate(DRUGS)}

def transform(r):
    p, a = r["prompt"], r["answer"]
    if variant == "nodistractor":
        p = re.sub(r"Previously on [a-z]+ \d+ mg, discontinued due to adverse effects\. ?", "", p)
        p = re.sub(r"Operating margin widened to \d+ percent as EBITDA benefited from lower amortization\. ?", "", p)
        p = re.sub(r"(The claims against [A-Z]\w+ \w+ were dismissed\.|[A-Z]\w+ \w+ was found not liable under the statute\.|The appellate panel affirmed that [A-Z]\w+ \w+ bears no liability\.) ?", "", p)
    if variant == "knownnames":
        for d, c in swap.items():
            p, a = p.replace(d, c), a.replace(d, c)
    return {"prompt": p, "completion": " " + a, "answer": a}

train = [transform(r) for r in load_rows(f"{domain}_task", "train")]
test = [transform(r) for r in load_rows(f"{domain}_task", "test")][:100]
print(train[0]["prompt"], train[0]["completion"])
model, tok = load_model()
if variant.startswith("lora"):  # lora (q/v) or lora-all (all linear layers); LORA_R, LORA_ALPHA env
    from peft import LoraConfig, get_peft_model
    targets = {"lora-all": "all-linear", "lora-attn": ["q_proj", "k_proj", "v_proj", "o_proj"]}.get(variant, ["q_proj", "v_proj"])
    r = int(os.environ.get("LORA_R", 8)); alpha = float(os.environ.get("LORA_ALPHA", 2 * r))
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=alpha, target_modules=targets))
curve = []
class Eval(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step in checkpoints:
            model.eval(); acc = completion_accuracy(model, tok, test); model.train()
            curve.append((state.global_step, acc)); print("STEP", state.global_step, acc, flush=True)
cfg = SFTConfig(output_dir=tempfile.mkdtemp(), max_steps=max(checkpoints), per_device_train_batch_size=8,
                learning_rate=lr, lr_scheduler_type=os.environ.get("SCHEDULE", "constant"), logging_steps=50, save_strategy="no", report_to=[],
                bf16=False, use_cpu=True, max_length=256, disable_tqdm=True, seed=0, activation_checkpointing=False)
t = time.time()
SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in train]),
           processing_class=tok, callbacks=[Eval()]).train()
print("RESULT", json.dumps({"domain": domain, "variant": variant, "lr": lr, "curve": curve, "r": os.environ.get("LORA_R"), "alpha": os.environ.get("LORA_ALPHA"), "schedule": os.environ.get("SCHEDULE"), "s": round(time.time()-t)}))
