"""Each exercise's check cell (tagged `check`) passes for the right answer and fails for a
plausible wrong one (every chapter; chapters 0-3 also on a grouped-query-attention model). The check
cells are read from the notebooks and run here against answers we inject, so the test follows
whatever the notebooks say; the solutions' shape is pinned too (nbgrader's markers)."""
import ast
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model

from labkit import adapters
from labkit.checks import check, check_true
from labkit.generation import generate
from labkit.labworld.general import ICL_PHRASINGS
from labkit.likelihood import perplexity, perplexity_from_nll, text_nll
from labkit.measure import count_params
from labkit.model import load_model
from labkit.profiles import PROFILES
from labkit.scoring import icl_prompt

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PROFILE = PROFILES["smoke"]


def cells(stem: str, tag: str) -> list[str]:
    nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())
    return ["".join(c["source"]) for c in nb["cells"] if tag in c.get("metadata", {}).get("tags", [])]


def run_check(stem: str, index: int, namespace: dict) -> None:
    exec(compile(cells(stem, "check")[index], f"{stem}[check {index}]", "exec"), dict(namespace))


def fails(stem: str, index: int, namespace: dict) -> bool:
    try:
        run_check(stem, index, namespace)
    except AssertionError:
        return True
    return False


@pytest.fixture
def gqa_model(make_tiny_llama):
    """conftest's tiny Llama with grouped-query attention (2 key/value heads for 4 query heads), 2 layers."""
    return lambda: make_tiny_llama(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


@pytest.mark.parametrize("stem", sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")))
def test_every_solution_has_markers_and_a_check_cell(stem):
    solutions, checks = cells(stem, "solution"), cells(stem, "check")
    assert 1 <= len(solutions) <= 3 and len(checks) == len(solutions)
    for src in solutions:
        assert "### BEGIN SOLUTION" in src and "### END SOLUTION" in src
    for src in checks:
        assert "check(" in src or "check_true(" in src


# ---- chapter 0 ---------------------------------------------------------------------------------
def test_ch0_tokens_per_word(embedded):
    _, tokenizer = embedded
    health = "Patient presented with dyspnea and tachycardia; started on cardexol 20 mg twice daily."
    general = "The little fox went to the park with her friend and they ate buns and laughed."
    tpw = {t: len(tokenizer.tokenize(t)) / len(t.split()) for t in (health, general)}
    ns = dict(tokenizer=tokenizer, health=health, general=general)
    run_check("00_base_model", 0, {**ns, "health_tpw": tpw[health], "general_tpw": tpw[general]})
    # words per token (the ratio upside down), and raw token counts
    assert fails("00_base_model", 0, {**ns, "health_tpw": 1 / tpw[health], "general_tpw": 1 / tpw[general]})
    assert fails("00_base_model", 0, {**ns, "health_tpw": len(tokenizer.tokenize(health)),
                                      "general_tpw": len(tokenizer.tokenize(general))})
    assert fails("00_base_model", 0, {**ns, "health_tpw": ..., "general_tpw": ...})


def test_ch0_perplexity_by_hand(embedded):
    model, tokenizer = embedded
    text = "Once upon a time, there was a little cat named Mira. She went to the park."
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    right = torch.exp(torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:])).item()
    unshifted = torch.exp(torch.nn.functional.cross_entropy(logits[0], ids[0])).item()
    mean_loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]).item()  # forgot exp
    ns = dict(model=model, tokenizer=tokenizer, text=text, perplexity=perplexity)
    run_check("00_base_model", 1, {**ns, "my_ppl": right})
    assert fails("00_base_model", 1, {**ns, "my_ppl": unshifted})
    assert fails("00_base_model", 1, {**ns, "my_ppl": mean_loss})


# ---- chapter 1 ---------------------------------------------------------------------------------
EXAMPLE = {"task": "plural", "input": "fox", "output": "foxes",
           "demos": [["cat", "cats"], ["bus", "buses"], ["owl", "owls"], ["cup", "cups"]]}


def test_ch1_two_shot_prompt(embedded):
    model, tokenizer = embedded
    ns = dict(model=model, tokenizer=tokenizer, example=EXAMPLE, icl_prompt=icl_prompt, generate=generate)
    run_check("01_prompt_engineering", 0, {**ns, "my_prompt": icl_prompt(EXAMPLE, 2)})
    assert fails("01_prompt_engineering", 0, {**ns, "my_prompt": icl_prompt(EXAMPLE, 3)})  # off by one
    instruction = ICL_PHRASINGS["plural"][0]
    no_arrow = f"{instruction}\ncat -> cats\nbus -> buses\nfox"
    assert fails("01_prompt_engineering", 0, {**ns, "my_prompt": no_arrow})


def test_ch1_extra_tokens(embedded):
    _, tokenizer = embedded
    items = [dict(EXAMPLE, input=w) for w in ("fox", "beach", "cat")]
    most = max(PROFILE.shots)

    def tokens(shots):
        return sum(len(tokenizer(icl_prompt(it, shots))["input_ids"]) for it in items)

    ns = dict(tokenizer=tokenizer, items=items, profile=PROFILE, icl_prompt=icl_prompt)
    run_check("01_prompt_engineering", 1, {**ns, "extra_tokens": (tokens(most) - tokens(0)) / len(items)})
    assert fails("01_prompt_engineering", 1, {**ns, "extra_tokens": tokens(most) - tokens(0)})  # not per item
    chars = sum(len(icl_prompt(it, most)) - len(icl_prompt(it, 0)) for it in items) / len(items)
    assert fails("01_prompt_engineering", 1, {**ns, "extra_tokens": chars})  # characters, not tokens


# ---- chapter 2: soft prompt and prefix counts, on the embedded model and on GQA ----------------
@pytest.mark.parametrize("which", ["embedded", "gqa"])
def test_ch2_counts(gqa_model, which):
    fresh = (lambda: load_model()[0]) if which == "embedded" else gqa_model
    n = PROFILE.virtual_tokens
    soft = get_peft_model(fresh(), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n))
    soft_count = count_params(soft)[0]
    prefix = get_peft_model(fresh(), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n))
    prefix_count = count_params(prefix)[0]
    cfg = prefix.get_base_model().config
    runs = {"support": {"trainable_params": soft_count},
            "prefix: support": {"trainable_params": prefix_count}}
    ns = dict(runs=runs, profile=PROFILE)

    run_check("02_prompt_tuning", 0, {**ns, "n_soft": n * cfg.hidden_size})
    assert fails("02_prompt_tuning", 0, {**ns, "n_soft": (n + 1) * cfg.hidden_size})
    assert fails("02_prompt_tuning", 0, {**ns, "n_soft": n * cfg.vocab_size})

    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    right = n * cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * head_dim
    run_check("02_prompt_tuning", 1, {**ns, "n_prefix": right, "n_soft": n * cfg.hidden_size})
    assert fails("02_prompt_tuning", 1, {**ns, "n_prefix": right // 2, "n_soft": 1})  # keys only
    mha = n * cfg.num_hidden_layers * 2 * cfg.hidden_size  # as if num_key_value_heads == num_attention_heads
    if which == "gqa":
        assert mha != right
        assert fails("02_prompt_tuning", 1, {**ns, "n_prefix": mha, "n_soft": 1})


# ---- chapter 3: LoRA count (GQA) and merge by hand ----------------------------------------------
@pytest.mark.parametrize("which", ["embedded", "gqa"])
def test_ch3_lora_count(gqa_model, which):
    make = (lambda: load_model()) if which == "embedded" else (lambda: (gqa_model(), None))
    cfg = make()[0].config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    r, h, layers = PROFILE.lora_r, cfg.hidden_size, cfg.num_hidden_layers
    right = layers * r * ((h + cfg.num_attention_heads * head_dim) + (h + cfg.num_key_value_heads * head_dim))
    ns = dict(base=make()[0], profile=PROFILE, load_model=make, get_peft_model=get_peft_model,
              LoraConfig=LoraConfig, count_params=count_params)
    run_check("03_lora", 0, {**ns, "n_lora": right})
    mha = layers * 2 * r * (h + h)  # the old answer: both projections hidden -> hidden
    if which == "gqa":
        assert mha != right
        assert fails("03_lora", 0, {**ns, "n_lora": mha})
    assert fails("03_lora", 0, {**ns, "n_lora": layers * r * (h + h)})  # one projection only


def test_ch3_merge_by_hand():
    torch.manual_seed(0)
    model = get_peft_model(load_model()[0], LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8,
                                                       target_modules=["q_proj", "v_proj"]))
    q0 = model.base_model.model.model.layers[0].self_attn.q_proj
    with torch.no_grad():
        q0.lora_B["default"].weight.normal_(0, 0.1)
    W0, A0, B0 = (t.detach().clone() for t in (q0.base_layer.weight, q0.lora_A["default"].weight,
                                                q0.lora_B["default"].weight))
    lora_cfg = model.peft_config["default"]
    merged = model.merge_and_unload()
    ns = dict(merged=merged, torch=torch)
    run_check("03_lora", 1, {**ns, "my_merged": W0 + (lora_cfg.lora_alpha / lora_cfg.r) * B0 @ A0})
    assert fails("03_lora", 1, {**ns, "my_merged": W0 + B0 @ A0})                       # no alpha / r
    assert fails("03_lora", 1, {**ns, "my_merged": W0 + (lora_cfg.lora_alpha / lora_cfg.r) * (B0 @ A0).T})


# ---- chapters 4-10: each check against the notebook's own solution and plausible wrong answers ---
# The reference answer is the chapter's solution cell, run here on small stand-ins for what the
# chapter computed (a tiny model, a few numbers); helpers the check needs come from the chapter.
CH4, CH5, CH6, CH7 = "04_full_finetuning", "05_instruction_tuning", "06_rlhf", "07_domain_adaptation"
CH8, CH9, CH10 = "08_distillation", "09_adapters", "10_real_model"
CHECKS = dict(check=check, check_true=check_true, math=math, torch=torch, F=torch.nn.functional)


def solve(stem: str, index: int, namespace: dict) -> dict:
    """The namespace after running solution cell `index` of `stem` in a copy of it."""
    ns = dict(namespace)
    exec(compile(cells(stem, "solution")[index], f"{stem}[solution {index}]", "exec"), ns)
    return ns


def chapter_function(stem: str, name: str, namespace: dict):
    """The function `name` as the chapter defines it (only its `def`, run in `namespace`)."""
    nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())
    for c in nb["cells"]:
        if c["cell_type"] != "code" or f"def {name}(" not in "".join(c["source"]):
            continue
        tree = ast.parse("".join(c["source"]))
        node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
        ns = dict(namespace)
        exec(compile(ast.Module([node], []), f"{stem}[{name}]", "exec"), ns)
        return ns[name]
    raise LookupError(f"{stem} defines no function {name}")


def test_ch4_adamw_state_bytes(tiny_llama):
    ids = torch.randint(2, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(tiny_llama.parameters())
    tiny_llama(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    state_bytes = sum(t.numel() * t.element_size() for s in optimizer.state.values()  # as chapter 4 does
                      for t in s.values() if torch.is_tensor(t) and t.dim() > 0)
    ns = dict(CHECKS, base=tiny_llama, count_params=count_params, state_bytes=state_bytes)
    run_check(CH4, 0, solve(CH4, 0, ns))
    n = count_params(tiny_llama)[0]
    assert fails(CH4, 0, {**ns, "adam_bytes": n * 4})       # one moment only
    assert fails(CH4, 0, {**ns, "adam_bytes": 2 * n})       # numbers, not bytes
    assert fails(CH4, 0, {**ns, "adam_bytes": 3 * n * 4})   # the weights counted too


def test_ch4_loss_rise():
    tokens, before_nll, full_nll = [12, 30, 7], [30.0, 60.0, 20.0], [33.0, 75.0, 20.5]

    def scores(nll):
        return {"nll": nll, "general_ppl": math.exp(sum(nll) / sum(tokens))}

    before, full = scores(before_nll), scores(full_nll)
    ns = dict(CHECKS, before=before, full_scores=full, doc_tokens=tokens)
    run_check(CH4, 1, solve(CH4, 1, ns))
    per_document = sum((a - b) / k for a, b, k in zip(full_nll, before_nll, tokens)) / len(tokens)
    assert fails(CH4, 1, {**ns, "loss_rise": per_document})  # mean of per-document rises
    assert fails(CH4, 1, {**ns, "loss_rise": full["general_ppl"] - before["general_ppl"]})
    assert fails(CH4, 1, {**ns, "loss_rise": sum(full_nll) - sum(before_nll)})  # not per token


def test_ch5_loss_share():
    from datasets import Dataset

    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, 7, 8, 9]},
            {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
            {"input_ids": [4, 5, 6, 7, 8, 9, 10], "labels": [-100] * 5 + [9, 10]}]

    def collate(batch):  # as TRL's collator: right padding, label -100 and mask 0 on the padding
        width = max(len(r["input_ids"]) for r in batch)

        def pad(seq, value):
            return list(seq) + [value] * (width - len(seq))

        return {"input_ids": torch.tensor([pad(r["input_ids"], 0) for r in batch]),
                "labels": torch.tensor([pad(r["labels"], -100) for r in batch]),
                "attention_mask": torch.tensor([pad([1] * len(r["input_ids"]), 0) for r in batch])}

    trainer = SimpleNamespace(train_dataset=Dataset.from_list(rows), data_collator=collate)
    ns = dict(CHECKS, sft_trainer=trainer)
    run_check(CH5, 0, solve(CH5, 0, ns))
    shares = [sum(t != -100 for t in r["labels"]) / len(r["input_ids"]) for r in rows]
    assert fails(CH5, 0, {**ns, "loss_share": sum(shares) / len(shares)})  # per-row mean
    assert fails(CH5, 0, {**ns, "loss_share": 8 / 15})   # the share without loss
    assert fails(CH5, 0, {**ns, "loss_share": 7 / 21})   # padding counted as tokens


def test_ch5_held_out_gain_per_family():
    import numpy as np
    import pandas as pd

    seen, held = ["capital"], ["first_word", "larger_number"]
    test_seen = [{"family": "capital"}] * 2
    test_held_all = [{"family": "first_word"}] * 2 + [{"family": "larger_number"}] * 2
    before = {"seen": {"correct": [1.0, 0.0]}, "held out": {"correct": [0.0, 0.0, 1.0, 0.0]},
              "new template": {"correct": [0.0, 0.0]}}
    after = {"seen": {"correct": [1.0, 1.0]}, "held out": {"correct": [1.0, 1.0, 1.0, 0.0]},
             "new template": {"correct": [1.0, 0.0]}}
    ns = dict(CHECKS, np=np, pd=pd, seen_families=seen, held_out_families=held, test_seen=test_seen,
              test_held_all=test_held_all, test_template=test_seen, before=before, after=after,
              CONTROL_FAMILY="larger_number",
              probe={"capital": [1.0], "first_word": [1.0], "larger_number": [0.0]})
    nb = json.loads((NOTEBOOKS / "05_instruction_tuning.ipynb").read_text())
    table_cell = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
                      and "family_table = " in "".join(c["source"]))
    exec(compile(table_cell, "05_instruction_tuning[family_table]", "exec"), ns)  # per_family, family_table
    run_check(CH5, 1, solve(CH5, 1, ns))
    assert fails(CH5, 1, {**ns, "gain": {"first_word": 1.0, "larger_number": 0.5}})  # after only
    assert fails(CH5, 1, {**ns, "gain": {"first_word": -1.0, "larger_number": 0.0}})  # sign
    assert fails(CH5, 1, {**ns, "gain": {"capital": 0.5, "first_word": 1.0,
                                                             "larger_number": 0.0}})  # seen family too
    assert fails(CH5, 1, {**ns, "gain": 0.5})  # pooled, not per family


def test_ch6_dpo_loss_by_hand():
    """Stand-in models: reply_logprob looks up each (model, reply) log-probability; the trainer's
    loss is chapter 6's DPO loss worked out by hand: -log sigmoid(beta * margin) plus the SFT term,
    the chosen reply's mean token negative log-likelihood (trl's loss_type=["sigmoid", "sft"])."""
    chosen, rejected = ("c1", "c2"), ("r1",)  # token ids: the chosen reply has two tokens
    logp = {("policy", chosen): -4.0, ("sft", chosen): -5.0,
            ("policy", rejected): -6.0, ("sft", rejected): -5.5}
    beta = 0.1
    margin = (-4.0 - -5.0) - (-6.0 - -5.5)                           # 1.5
    nll = 4.0 / len(chosen)                                          # mean over the chosen tokens
    trainer_loss = math.log1p(math.exp(-beta * margin)) + nll
    trainer = SimpleNamespace(train_dataset=SimpleNamespace(select=lambda rows: rows),
                              evaluate=lambda eval_dataset: {"eval_loss": trainer_loss})
    ns = dict(CHECKS, one_pair={"prompt_ids": "p", "chosen_ids": chosen, "rejected_ids": rejected},
              reply_logprob=lambda model, prompt_ids, reply_ids: logp[model, reply_ids],
              dpo_policy="policy", sft="sft", profile=SimpleNamespace(dpo_beta=beta), dpo_trainer=trainer)
    run_check(CH6, 0, solve(CH6, 0, ns))
    assert fails(CH6, 0, {**ns, "my_dpo_loss": math.log1p(math.exp(-margin)) + nll})       # no beta
    assert fails(CH6, 0, {**ns, "my_dpo_loss": math.log1p(math.exp(-beta * 2.0)) + nll})   # no reference
    assert fails(CH6, 0, {**ns, "my_dpo_loss": math.log1p(math.exp(beta * margin)) + nll})  # replies swapped
    assert fails(CH6, 0, {**ns, "my_dpo_loss": math.log1p(math.exp(-beta * margin))})       # no SFT term
    assert fails(CH6, 0, {**ns, "my_dpo_loss": math.log1p(math.exp(-beta * margin)) + 4.0})  # sum, not mean


def test_ch6_leave_one_out_advantages():
    group = torch.tensor([1.0, 0.0, 0.5, 2.0])
    ns = dict(CHECKS, group=group)
    run_check(CH6, 1, solve(CH6, 1, ns))
    assert fails(CH6, 1, {**ns, "my_advantages": (group - group.mean()).tolist()})  # itself in the mean
    assert fails(CH6, 1, {**ns, "my_advantages": ((group - group.mean()) / group.std()).tolist()})  # GRPO
    assert fails(CH6, 1, {**ns, "my_advantages": group.tolist()})  # no baseline


TEXTS_CH7 = ["The court held that the lease was void.", "Counsel for the appellant argued at length that the "
             "contract, signed in haste, bound neither party.", "Appeal dismissed."]


def test_ch7_domain_perplexity(embedded):
    model, tokenizer = embedded
    nll = {"DAPT": {"domain": text_nll(model, tokenizer, TEXTS_CH7)}}
    ns = dict(CHECKS, nll=nll, dapt_model=model, tokenizer=tokenizer, domain_texts=TEXTS_CH7,
              perplexity=perplexity, perplexity_from_nll=perplexity_from_nll)
    run_check(CH7, 0, solve(CH7, 0, ns))
    pairs = nll["DAPT"]["domain"]
    assert fails(CH7, 0, {**ns, "my_ppl": sum(math.exp(n / k) for n, k in pairs) / len(pairs)})
    assert fails(CH7, 0, {**ns, "my_ppl": math.exp(sum(n / k for n, k in pairs) / len(pairs))})


def test_ch7_general_perplexity_change(embedded):
    base, tokenizer = embedded
    dapt = load_model()[0]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a stand-in for continued pretraining: a visibly different model
        for layer in dapt.model.layers:
            w = layer.mlp.down_proj.weight
            w.add_(torch.randn(w.shape, generator=generator) * 0.1)
    nll = {name: {"general": text_nll(m, tokenizer, TEXTS_CH7)}
           for name, m in (("base", base), ("DAPT", dapt))}
    ns = dict(CHECKS, nll=nll, perplexity_from_nll=perplexity_from_nll, perplexity=perplexity, base=base,
              dapt_model=dapt, tokenizer=tokenizer, general_texts=TEXTS_CH7)
    solved = solve(CH7, 1, ns)
    run_check(CH7, 1, solved)
    before, after = solved["before"], solved["after"]
    assert abs(after / before - 1) > 0.05, "the stand-in must change perplexity visibly"
    assert fails(CH7, 1, {**ns, "forgetting_pct": 100 * after / before})      # no - 1
    assert fails(CH7, 1, {**ns, "forgetting_pct": 100 * (before / after - 1)})  # inverted
    assert fails(CH7, 1, {**ns, "forgetting_pct": after - before})            # not a percentage


def test_ch8_student_parameters(make_tiny_llama):
    import copy

    from transformers import AutoModelForCausalLM

    teacher = make_tiny_llama(num_hidden_layers=4)
    make_student = chapter_function("08_distillation", "make_student",
                                    dict(copy=copy, torch=torch, AutoModelForCausalLM=AutoModelForCausalLM))
    student0 = make_student(teacher)
    teacher_params = count_params(teacher)[1]
    ns = dict(CHECKS, teacher=teacher, student0=student0, teacher_params=teacher_params,
              count_params=count_params)
    run_check(CH8, 0, solve(CH8, 0, ns))
    kept = student0.config.num_hidden_layers / teacher.config.num_hidden_layers
    assert fails(CH8, 0, {**ns, "n_student": round(teacher_params * kept)})  # embeddings are not per layer
    no_norms = sum(p.numel() for n, p in teacher.model.layers[0].named_parameters() if "norm" not in n)
    assert fails(CH8, 0, {**ns, "n_student": teacher_params - 2 * no_norms})  # layer norms forgotten


def test_ch8_soften(embedded):
    teacher, tokenizer = embedded
    ns = dict(CHECKS, teacher=teacher, tokenizer=tokenizer, test_rows=[{"prompt": "The fox went to the"}])
    run_check(CH8, 1, solve(CH8, 1, ns))
    for wrong in (lambda logits, T: torch.softmax(logits * T, dim=-1),      # multiplied by T
                  lambda logits, T: torch.softmax(logits, dim=-1),          # T ignored
                  lambda logits, T: torch.log_softmax(logits / T, dim=-1)):  # log-probabilities
        assert fails(CH8, 1, {**ns, "soften": wrong})


def test_ch9_adapter_parameters(make_tiny_llama):
    base, m = make_tiny_llama(num_hidden_layers=2), 4
    adapters.add_adapter(base, "task", adapters.BottleneckConfig(bottleneck_size=m, activation="relu",
                                                                 targets=("self_attn", "mlp")))  # Houlsby
    adapters.set_adapter(base, "task")
    ns = dict(CHECKS, base=base, m=m, adapter_trainable=count_params(base)[0])
    run_check(CH9, 0, solve(CH9, 0, ns))
    layers, h = base.config.num_hidden_layers, base.config.hidden_size
    assert fails(CH9, 0, {**ns, "n_adapter": layers * (2 * h * m + m + h)})      # one adapter per layer
    assert fails(CH9, 0, {**ns, "n_adapter": 2 * layers * 2 * h * m})            # no biases
    assert fails(CH9, 0, {**ns, "n_adapter": 2 * (2 * h * m + m + h)})           # one layer
    assert fails(CH9, 0, {**ns, "n_adapter": 2 * layers * (2 * h * m + 2 * m)})  # the wrong bias sizes


def test_ch9_adapter_output_by_hand():
    torch.manual_seed(0)
    d, m = 16, 4
    layer0 = adapters.Bottleneck(d, m, activation="relu")
    with torch.no_grad():
        layer0.up.weight.normal_()  # as after training: zero-init would hide a missing up projection
        layer0.up.bias.normal_()
    down_w, down_b = layer0.down.weight.detach(), layer0.down.bias.detach()
    up_w, up_b = layer0.up.weight.detach(), layer0.up.bias.detach()
    h = torch.randn(2, 3, d)
    ns = dict(CHECKS, layer0=layer0, h=h, down_w=down_w, down_b=down_b, up_w=up_w, up_b=up_b)
    run_check(CH9, 1, solve(CH9, 1, ns))
    assert fails(CH9, 1, {**ns, "my_out": torch.relu(h @ down_w.T + down_b) @ up_w.T + up_b})  # residual
    assert fails(CH9, 1, {**ns, "my_out": h + torch.relu(h @ down_w.T + down_b) @ up_w.T})     # up bias
    assert fails(CH9, 1, {**ns, "my_out": h + (h @ down_w.T + down_b) @ up_w.T + up_b})        # no relu
    assert fails(CH9, 1, {**ns, "my_out": ...})                                              # unanswered


def test_ch10_lora_count_under_grouped_query_attention(make_tiny_llama):
    model = make_tiny_llama(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    c = model.config
    config = LoraConfig(task_type="CAUSAL_LM", r=PROFILE.lora_r, lora_alpha=2 * PROFILE.lora_r,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    lora = get_peft_model(model, config)
    ns = dict(CHECKS, c=c, profile=PROFILE, trainable=count_params(lora)[0])
    run_check(CH10, 0, solve(CH10, 0, ns))
    r, h, layers = PROFILE.lora_r, c.hidden_size, c.num_hidden_layers
    assert fails(CH10, 0, {**ns, "n_lora": layers * r * 4 * 2 * h})  # k and v as wide as q
    assert fails(CH10, 0, {**ns, "n_lora": layers * r * 2 * 2 * h})  # q and v only


def test_ch10_few_shot_messages():
    import random
    import re

    printer = SimpleNamespace(apply_chat_template=lambda *args, **kwargs: "")  # the cell prints a prompt
    ns = dict(CHECKS, random=random, re=re, profile=PROFILE, tokenizer=printer)
    nb = json.loads((NOTEBOOKS / "10_real_model.ipynb").read_text())
    problem_cell = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
                        and "def conversation(" in "".join(c["source"]))
    exec(compile(problem_cell, "10_real_model[problems]", "exec"), ns)  # problems, demos, DIRECT, ...
    run_check(CH10, 1, solve(CH10, 1, ns))
    demos, question, direct = ns["demos"], ns["problems"][1][0], ns["DIRECT"]

    def shots(suffix=direct, answer=str):
        return [t for q, a in demos for t in ({"role": "user", "content": q + suffix},
                                              {"role": "assistant", "content": answer(a)})]

    last = [{"role": "user", "content": question + direct}]
    assert fails(CH10, 1, {**ns, "my_messages": shots(suffix="") + last})  # examples without the cue
    assert fails(CH10, 1, {**ns, "my_messages": shots(answer=lambda a: a) + last})  # answers as numbers
    assert fails(CH10, 1, {**ns, "my_messages": shots() + [{"role": "user", "content": question}]})
    assert fails(CH10, 1, {**ns, "my_messages": last})  # zero-shot
