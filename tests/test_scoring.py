"""Every number in the book comes from labkit.evaluate: each scoring function is pinned here
against a reference computed another way, and each test also shows that the plausible broken
variant (right padding, unmasked pads, per-sequence averaging, substring matching...) would
fail the same assertion — a test that a broken implementation passes is a defect."""
import math

import pytest
import torch

import labkit.evaluate as ev
from labkit.evaluate import (contains_answer, generate, icl_prompt, parse_number, perplexity,
                             tone_reply_score)
from labkit.model import load_model

PROMPTS = ["Once upon a time,", "What is 358 + 467?\nLet us add digit by digit.\n", "The fox"]


@pytest.fixture(scope="module")
def embedded():
    return load_model()


@torch.no_grad()
def _generate_one(model, tokenizer, prompt, n):
    """One prompt, no padding at all: the reference for batched generation."""
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


@torch.no_grad()
def _generate_right_padded(model, tokenizer, prompts, n):
    """The broken variant: pad on the right, so short prompts continue after their pad tokens."""
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        batch = tokenizer(prompts, return_tensors="pt", padding=True)
        out = model.generate(**batch, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side


def test_batched_generation_equals_one_prompt_at_a_time(embedded):
    model, tokenizer = embedded
    lengths = {len(tokenizer(p)["input_ids"]) for p in PROMPTS}
    assert len(lengths) > 1, "the prompts must differ in length, or padding is never exercised"
    alone = [_generate_one(model, tokenizer, p, 12) for p in PROMPTS]
    assert generate(model, tokenizer, PROMPTS, max_new_tokens=12, stop=None) == alone
    assert generate(model, tokenizer, PROMPTS, max_new_tokens=12, stop=None, batch_size=2) == alone
    assert tokenizer.padding_side == tokenizer.init_kwargs.get("padding_side", tokenizer.padding_side)
    # the broken variant differs from the reference, so the assertion above can fail
    assert _generate_right_padded(model, tokenizer, PROMPTS, 12) != alone


def test_stop_string_cuts_at_its_first_occurrence(embedded):
    model, tokenizer = embedded
    prompt = ["Once upon a time,"]
    full = generate(model, tokenizer, prompt, max_new_tokens=60, stop=None)[0]
    stop = ". "
    assert full.count(stop) >= 2, "need a completion with several sentences to test the cut"
    cut = generate(model, tokenizer, prompt, max_new_tokens=60, stop=stop)[0]
    assert cut == full.split(stop)[0] and stop not in cut
    assert cut != full.rsplit(stop, 1)[0]  # cutting at the last occurrence would keep more sentences
    assert generate(model, tokenizer, prompt, max_new_tokens=60, stop="no such text")[0] == full


@torch.no_grad()
def _nll_and_count(model, tokenizer, text):
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    logits = model(ids).logits[0, :-1]
    return torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item(), ids.shape[1] - 1


@torch.no_grad()
def test_perplexity_pools_tokens_and_ignores_padding(embedded):
    model, tokenizer = embedded
    texts = ["The fox.", "Once upon a time, there was a little cat named Mira. She went to the park and "
                         "played with her friend until the sun went down."]
    parts = [_nll_and_count(model, tokenizer, t) for t in texts]
    pooled = math.exp(sum(n for n, _ in parts) / sum(c for _, c in parts))
    assert perplexity(model, tokenizer, texts) == pytest.approx(pooled, rel=1e-5)
    assert perplexity(model, tokenizer, texts[:1]) == pytest.approx(math.exp(parts[0][0] / parts[0][1]), rel=1e-5)

    # broken variant 1: per-sequence averaging (mean of each text's mean loss)
    per_sequence = math.exp(sum(n / c for n, c in parts) / len(parts))
    assert per_sequence != pytest.approx(pooled, rel=1e-3)
    # broken variant 2: pads left in the labels
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    logits = model(**batch).logits[:, :-1]
    labels = batch["input_ids"][:, 1:]
    unmasked = math.exp(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                          labels.reshape(-1)).item())
    assert unmasked != pytest.approx(pooled, rel=1e-3)


def test_completion_scores_are_exact_matches_per_row(monkeypatch):
    rows = [{"prompt": "p1", "answer": "12%"}, {"prompt": "p2", "answer": "12%"},
            {"prompt": "p3", "answer": "Dr Vale"}, {"prompt": "p4", "answer": "Dr Vale"}]
    outputs = [" 12% ", "12%.", "Dr Vale", "Dr Vale and Dr Kim"]
    monkeypatch.setattr(ev, "generate", lambda model, tok, prompts, max_new_tokens=12: outputs[:len(prompts)])
    assert ev.completion_scores(None, None, rows) == [1.0, 0.0, 1.0, 0.0]
    assert ev.completion_accuracy(None, None, rows) == 0.5
    # broken variants: a substring or prefix match would count "12%." and "Dr Vale and Dr Kim"
    assert [float(r["answer"] in o) for o, r in zip(outputs, rows)] != [1.0, 0.0, 1.0, 0.0]
    assert [float(o.strip().startswith(r["answer"])) for o, r in zip(outputs, rows)] != [1.0, 0.0, 1.0, 0.0]


def test_icl_prompt_layout():
    item = {"task": "plural", "input": "fox", "output": "foxes",
            "demos": [["cat", "cats"], ["bus", "buses"], ["owl", "owls"]]}
    instruction = ev.ICL_PHRASINGS["plural"][0]
    assert icl_prompt(item, 0) == f"{instruction}\nfox ->"
    assert icl_prompt(item, 2) == f"{instruction}\ncat -> cats\nbus -> buses\nfox ->"
    assert icl_prompt(item, 2, phrasing=1).startswith(ev.ICL_PHRASINGS["plural"][1] + "\n")
    assert icl_prompt(item, 1, sep=" = ") == f"{instruction}\ncat = cats\nfox ="
    assert icl_prompt(item, 3).count("\n") == 4  # instruction + 3 demos + query: shots are not off by one


@pytest.mark.parametrize("text, mode, expected", [
    (" 1446\n", "direct", 1446),
    ("1446", "direct", 1446),
    (" x 12", "direct", None),           # must start with the number
    ("Units: 7 + 9 = 16, write 6 carry 1.\nThe answer is 1446.", "cot", 1446),  # not the first number
    ("Units: 7 + 9 = 16, write 6 carry 1.", "cot", None),  # no final answer: not read from the working
    ("The answer is 99. The answer is 100.", "cot", 99),
])
def test_parse_number(text, mode, expected):
    assert parse_number(text, mode) == expected


def test_parse_number_is_not_the_first_number_in_the_working():
    text = "Units: 7 + 9 = 16.\nThe answer is 1446."
    first_number = int(next(t for t in text.replace(".", " ").split() if t.isdigit()))
    assert parse_number(text, "cot") == 1446 != first_number


@pytest.mark.parametrize("output, answer, expected", [
    ("The answer is 18.", "18", True),
    ("The answer is 118.", "18", False),   # the docstring's own example
    ("18", "18", True),
    ("1800 apples", "18", False),
    ("It is Lumen, of course", "lumen", True),  # case-insensitive
    ("Lumenville", "Lumen", False),
    ("cost 3.5 units", "3.5", True),           # regex characters in the answer are literal
    ("cost 345 units", "3.5", False),
])
def test_contains_answer_is_a_whole_word_match(output, answer, expected):
    assert contains_answer(output, answer) is expected
    if answer in output and not expected:  # a plain substring test would get these wrong
        assert (answer.lower() in output.lower()) != expected


def test_tone_score_needs_the_style_and_this_message():
    row = {"prompt": "Message: Hello, my pig from Sun Tools is broken.\nReply:",
           "pirate": " Arr, matey! Yer pig is broken? Shiver me timbers! I will fix it for you, savvy?",
           "support": " Thank you for telling me! I am sorry to hear that your pig is broken. I will fix "
                      "it for you right away. Is there anything else I can help you with?"}
    assert tone_reply_score(row["pirate"], row, "pirate") == 1.0
    assert tone_reply_score(row["support"], row, "support") == 1.0
    assert tone_reply_score(" Arr, matey! Have ye seen my ship??", row, "pirate") == 0.0  # off topic
    assert tone_reply_score(" Your pig is broken. I will fix it.", row, "support") == 0.0  # no tone
    assert tone_reply_score(row["support"], row, "pirate") == 0.0  # the other style
