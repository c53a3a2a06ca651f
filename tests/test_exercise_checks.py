"""Each exercise's check cell (tagged `check`) passes for the right answer and fails for a
plausible wrong one, on the embedded model and on a grouped-query-attention model. The check
cells are read from the notebooks and run here against answers we inject, so the test follows
whatever the notebooks say; the solutions' shape is pinned too (nbgrader's markers)."""
import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from labkit.generation import generate
from labkit.likelihood import perplexity
from labkit.labworld.general import ICL_PHRASINGS
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


@pytest.fixture(scope="module")
def embedded():
    return load_model()


def gqa_model():
    """A tiny Llama with grouped-query attention (2 key/value heads for 4 query heads)."""
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        pad_token_id=0, eos_token_id=1, bos_token_id=None))


@pytest.mark.parametrize("stem", ["00_base_model", "01_prompt_engineering", "02_prompt_tuning", "03_lora"])
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
    assert fails("01_prompt_engineering", 0, {**ns, "my_prompt": f"{instruction}\ncat -> cats\nbus -> buses\nfox"})


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
def test_ch2_counts(embedded, which):
    fresh = (lambda: load_model()[0]) if which == "embedded" else gqa_model
    n = PROFILE.virtual_tokens
    soft = get_peft_model(fresh(), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n))
    soft_count = count_params(soft)[0]
    prefix = get_peft_model(fresh(), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n))
    prefix_count = count_params(prefix)[0]
    cfg = prefix.get_base_model().config
    runs = {"support": {"trainable_params": soft_count}, "prefix: support": {"trainable_params": prefix_count}}
    ns = dict(runs=runs, profile=PROFILE)

    run_check("02_prompt_tuning", 0, {**ns, "n_soft": n * cfg.hidden_size})
    assert fails("02_prompt_tuning", 0, {**ns, "n_soft": (n + 1) * cfg.hidden_size})
    assert fails("02_prompt_tuning", 0, {**ns, "n_soft": n * cfg.vocab_size})

    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    right = n * cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * head_dim
    run_check("02_prompt_tuning", 1, {**ns, "n_prefix": right, "n_soft": n * cfg.hidden_size})
    assert fails("02_prompt_tuning", 1, {**ns, "n_prefix": right // 2, "n_soft": 1})  # keys only
    mha = n * cfg.num_hidden_layers * 2 * cfg.hidden_size  # assumes num_key_value_heads == num_attention_heads
    if which == "gqa":
        assert mha != right
        assert fails("02_prompt_tuning", 1, {**ns, "n_prefix": mha, "n_soft": 1})


# ---- chapter 3: LoRA count (GQA) and merge by hand ----------------------------------------------
@pytest.mark.parametrize("which", ["embedded", "gqa"])
def test_ch3_lora_count(embedded, which):
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


def test_ch3_merge_by_hand(embedded):
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
