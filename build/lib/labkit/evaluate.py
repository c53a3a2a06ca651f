"""Scoring a model on LabWorld (chapter 0 introduces each score; later chapters reuse them).

Generation is greedy and batched; every accuracy is an exact or whole-word match against the
answer stored with the item, so a score can't be gamed by a long rambling output.
"""
from __future__ import annotations

import math
import re

import torch

from .labworld.general import COT_CUE, DIRECT_CUE, ICL_PHRASINGS, addition_question
from .tokenizer import IM_END


def _has_virtual_tokens(model) -> bool:
    """True for peft prompt-learning models (prompt tuning, prefix tuning, p-tuning)."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


@torch.no_grad()
def _greedy_recompute(model, tokenizer, prompt: str, max_new_tokens: int, stop_ids: list[int]) -> list[int]:
    """Greedy decoding that feeds the whole sequence through the model at every step (no KV cache,
    no padding): what `model(...)` computes in training, one token at a time."""
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(model.device)
    new: list[int] = []
    for _ in range(max_new_tokens):
        nxt = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].argmax()
        if nxt.item() in stop_ids:
            break
        new.append(nxt.item())
        ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return new


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 16, batch_size: int = 32,
             stop: str | None = "\n", do_sample: bool = False, temperature: float = 1.0) -> list[str]:
    """Complete each prompt; the text after the prompt, cut at `stop`.

    Soft prompts and prefixes (peft prompt learning) decode greedily with `_greedy_recompute`:
    in this stack (peft 0.21, transformers 5) their `model.generate` keeps only the first token
    right and garbles the rest, with or without the KV cache (peft issues #1391, #2123; measured
    in tests/test_evaluate.py against references built without peft's generate).
    """
    stop_ids = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)]
    if _has_virtual_tokens(model):
        if do_sample:
            raise NotImplementedError("sampling from a prompt-tuned or prefix-tuned model: use greedy decoding")
        texts = [tokenizer.decode(_greedy_recompute(model, tokenizer, p, max_new_tokens, stop_ids),
                                  skip_special_tokens=True) for p in prompts]
    else:
        texts = _generate_batched(model, tokenizer, prompts, max_new_tokens, batch_size, stop_ids,
                                  do_sample, temperature)
    return [t.split(stop)[0] if stop else t for t in texts]


def _generate_batched(model, tokenizer, prompts, max_new_tokens, batch_size, stop_ids, do_sample, temperature):
    """`model.generate` on left-padded batches; the decoded text after each prompt."""
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    texts = []
    try:
        for i in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True).to(model.device)
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                 temperature=temperature if do_sample else None, top_k=40 if do_sample else None,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_ids)
            texts += tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return texts


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], max_length: int = 256, batch_size: int = 32) -> float:
    """exp(mean next-token loss) over all tokens of `texts` (each truncated to `max_length`)."""
    total_nll, total_tokens = 0.0, 0
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                              max_length=max_length).to(model.device)
            logits = model(**batch).logits[:, :-1].float()
            labels = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                    ignore_index=-100, reduction="sum")
            total_nll += nll.item()
            total_tokens += int((labels != -100).sum())
    finally:
        tokenizer.padding_side = side
    return math.exp(total_nll / total_tokens)


def exact_match(outputs: list[str], answers: list[str]) -> float:
    return sum(o.strip() == a.strip() for o, a in zip(outputs, answers)) / max(len(answers), 1)


def contains_answer(output: str, answer: str) -> bool:
    """Whole-word, case-insensitive: "18" does not match "118"."""
    return re.search(rf"(?<![\w]){re.escape(answer.lower())}(?![\w])", output.lower()) is not None


# ---- chain of thought: addition ------------------------------------------------------------
COT_MAX_TOKENS = 200  # the longest 3-digit working is about 140 tokens
def addition_prompt(a: int, b: int, mode: str) -> str:
    """mode "direct" asks for the answer at once, "cot" for the digit-by-digit working."""
    return addition_question(a, b) + (DIRECT_CUE if mode == "direct" else COT_CUE + "\n")


def parse_number(text: str, mode: str) -> int | None:
    found = re.search(r"The answer is (\d+)", text) if mode == "cot" else re.match(r"\s*(\d+)", text)
    return int(found.group(1)) if found else None


def addition_accuracy(model, tokenizer, items: list[dict], mode: str) -> float:
    prompts = [addition_prompt(it["a"], it["b"], mode) for it in items]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=COT_MAX_TOKENS if mode == "cot" else 6,
                       stop=None if mode == "cot" else "\n")
    return sum(parse_number(o, mode) == it["sum"] for o, it in zip(outputs, items)) / len(items)


# ---- in-context learning -----------------------------------------------------------------
def icl_prompt(item: dict, shots: int, phrasing: int = 0, sep: str = " -> ") -> str:
    """An instruction (unlike anything in the corpus), `shots` solved examples, then the query."""
    lines = [ICL_PHRASINGS[item["task"]][phrasing]]
    lines += [f"{x}{sep}{y}" for x, y in item["demos"][:shots]]
    lines.append(f"{item['input']}{sep.rstrip()}")
    return "\n".join(lines)


def icl_accuracy(model, tokenizer, items: list[dict], shots: int, phrasing: int = 0,
                 sep: str = " -> ") -> dict[str, float]:
    """Exact-match accuracy per task, plus their mean under "mean"."""
    outputs = generate(model, tokenizer, [icl_prompt(it, shots, phrasing, sep) for it in items], max_new_tokens=8)
    per_task: dict[str, list[bool]] = {}
    for out, it in zip(outputs, items):
        per_task.setdefault(it["task"], []).append(out.strip() == it["output"])
    scores = {t: sum(v) / len(v) for t, v in sorted(per_task.items())}
    scores["mean"] = sum(scores.values()) / len(scores)
    return scores


# ---- instruction following ---------------------------------------------------------------
def chat_prompt(tokenizer, user: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)


def instruction_accuracy(model, tokenizer, rows: list[dict], max_new_tokens: int = 24) -> float:
    """Share of chat replies that contain the expected answer as a whole word."""
    prompts = [chat_prompt(tokenizer, r["messages"][0]["content"]) for r in rows]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop=None)
    return sum(contains_answer(o, r["answer"]) for o, r in zip(outputs, rows)) / len(rows)


def completion_accuracy(model, tokenizer, rows: list[dict], max_new_tokens: int = 12) -> float:
    """Exact match on prompt/completion tasks (the domain, tone and adapter tasks)."""
    outputs = generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=max_new_tokens)
    return exact_match(outputs, [r["answer"] for r in rows])


# ---- the base model's report card (chapter 0, and the model card) --------------------------
def base_model_report(model, tokenizer, limit: int | None = None) -> dict[str, float]:
    """Every ability chapter 0 measures, on the held-out evaluation items.
    `limit` caps items per evaluation (the smoke profile); None uses them all."""
    from .data import load_rows
    from .labworld.domains import DOMAINS

    def take(rows):
        return rows[:limit] if limit else rows

    def take_per_task(items):  # keep every task represented
        if not limit:
            return items
        by_task: dict[str, list] = {}
        for it in items:
            by_task.setdefault(it["task"], []).append(it)
        return [it for rows in by_task.values() for it in rows[: max(1, limit // len(by_task))]]

    additions = take(load_rows("eval", "addition"))
    icl_items, novel_items = take_per_task(load_rows("eval", "icl")), take_per_task(load_rows("eval", "icl_novel"))
    report = {
        "addition_direct": addition_accuracy(model, tokenizer, additions, "direct"),
        "addition_cot": addition_accuracy(model, tokenizer, additions, "cot"),
        "icl_0shot": icl_accuracy(model, tokenizer, icl_items, 0)["mean"],
        "icl_3shot": icl_accuracy(model, tokenizer, icl_items, 3)["mean"],
        "icl_novel_0shot": icl_accuracy(model, tokenizer, novel_items, 0)["mean"],
        "icl_novel_3shot": icl_accuracy(model, tokenizer, novel_items, 3)["mean"],
        "instruction_zero_shot": instruction_accuracy(model, tokenizer, take(load_rows("instructions", "test"))),
        "ppl_general": perplexity(model, tokenizer, [r["text"] for r in take(load_rows("general", "validation"))]),
    }
    for domain in DOMAINS:
        texts = [r["text"] for r in take(load_rows(f"{domain}_corpus", "validation"))]
        report[f"ppl_{domain}"] = perplexity(model, tokenizer, texts)
    return report
