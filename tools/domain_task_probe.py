"""Issue 9 diagnosis (kept for the record): tokens per drug and company name, and a copy probe."""
import json

from labkit.runtime import quiet

quiet()
from labkit.generation import generate
from labkit.labworld.domains import DRUGS
from labkit.labworld.world import build_world
from labkit.model import load_model

model, tok = load_model()
out = {}
world = build_world(1234)
companies = [c.name for c in world.companies][:12]
out["tokens_per_drug"] = {d: len(tok(" " + d, add_special_tokens=False)["input_ids"]) for d in DRUGS}
out["tokens_per_company"] = {c: len(tok(" " + c, add_special_tokens=False)["input_ids"]) for c in companies}
print(json.dumps(out, indent=0))
# copy probe: one sentence, then the question; does the base copy the name?
def probe(names, make):
    prompts = [make(n) for n in names]
    outs = generate(model, tok, prompts, max_new_tokens=6)
    return {n: o for n, o in zip(names, outs)}, sum(
        o.strip().startswith(n) for n, o in zip(names, outs)
    ) / len(names)
d_out, d_acc = probe(
    DRUGS, lambda n: f"Started on {n} 20 mg once daily.\nQuestion: Which drug was started?\nAnswer:"
)
c_out, c_acc = probe(
    companies, lambda n: f"The court held that {n} is liable.\nQuestion: Which party is liable?\nAnswer:"
)
print("copy drug", d_acc, d_out)
print("copy company", c_acc, c_out)
# repetition copy: name appears, then repeat it
d2, d2acc = probe(DRUGS, lambda n: f"{n} {n} {n}")
print("repeat drug", d2acc, d2)
