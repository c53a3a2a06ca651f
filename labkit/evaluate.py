"""Scoring a model on LabWorld (chapter 0 introduces each score; later chapters reuse them).

Generation is greedy and batched; every accuracy is an exact or whole-word match against the
answer stored with the item, so a score can't be gamed by a long rambling output.

Each `*_accuracy` is the mean of a `*_scores` list with one 0/1 score per item, in item order:
comparative claims need the per-item scores for a paired interval
(`labkit.stats.paired_difference(scores_a, scores_b)`). tests/test_evaluate.py pins each
scoring function against its plausible broken variant.
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


def text_logits(model, batch) -> torch.Tensor:
    """Logits for the text positions only, shape (batch, text_len, vocab).

    Prompt tuning and p-tuning (peft) put their virtual tokens in front of the text, so the
    model's logits carry one extra position per virtual token; those come first and are dropped
    here, so position t of the result predicts text token t+1, as for a plain model. Prefix tuning
    adds keys and values, not positions: nothing to drop. Pair these logits with labels instead of
    `model(**batch).logits` wherever a model may be prompt-tuned.
    """
    logits = model(**batch).logits
    extra = logits.shape[1] - batch["input_ids"].shape[1]  # peft's num_virtual_tokens, or 0
    if extra < 0:
        raise ValueError(f"the model returned {logits.shape[1]} positions for {batch['input_ids'].shape[1]} tokens")
    return logits[:, extra:]


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], max_length: int = 256, batch_size: int = 32) -> float:
    """exp(mean next-token loss) over all tokens of `texts` (each truncated to `max_length`).

    Every token after a text's first is predicted from the ones before it (teacher forcing);
    padding is never scored. For a prompt-tuned model only the text tokens are scored, after the
    soft prompt (see `text_logits`).
    Raises ValueError when there is nothing to score: no texts, or none with two tokens or more.
    """
    if len(texts) == 0:
        raise ValueError("perplexity: no texts to score (got an empty list)")
    total_nll, total_tokens = 0.0, 0
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                              max_length=max_length).to(model.device)
            logits = text_logits(model, batch)[:, :-1].float()  # (B, T-1, V): predicts tokens 1..T-1
            labels = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                    ignore_index=-100, reduction="sum")
            total_nll += nll.item()
            total_tokens += int((labels != -100).sum())
    finally:
        tokenizer.padding_side = side
    if total_tokens == 0:
        raise ValueError(f"perplexity: nothing to score: none of the {len(texts)} text(s) has a next token "
                         "to predict (each needs at least two tokens)")
    return math.exp(total_nll / total_tokens)


def _term_spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """Character spans [start, end) of every whole-word, case-insensitive occurrence of a term."""
    spans = []
    for term in terms:
        spans += [m.span() for m in re.finditer(rf"(?<![\w]){re.escape(term)}(?![\w])", text, re.IGNORECASE)]
    return spans


@torch.no_grad()
def text_nll(model, tokenizer, texts: list[str], terms: list[str] | None = None, max_length: int = 256,
             batch_size: int = 32) -> list[tuple[float, int]]:
    """Per text, (summed next-token negative log-likelihood in nats, number of tokens scored).

    Without `terms` every predicted token counts, so exp(sum of nll / sum of tokens) over all
    texts equals `perplexity(model, tokenizer, texts)`; per-text values let a comparison carry a
    paired interval (labkit.stats). With `terms` (e.g. a domain's jargon, chapter 7) only the
    tokens whose characters overlap a whole-word, case-insensitive occurrence of a term are
    scored: the perplexity of the jargon itself. A text with no term scores (0.0, 0).
    Needs a fast tokenizer (character offsets); raises ValueError otherwise.
    """
    if terms is not None and not getattr(tokenizer, "is_fast", False):
        raise ValueError("text_nll(terms=...) needs a fast tokenizer (offset mapping); load it with use_fast=True")
    out: list[tuple[float, int]] = []
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        for i in range(0, len(texts), batch_size):
            chunk = texts[i:i + batch_size]
            batch = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_length,
                              return_offsets_mapping=terms is not None)
            offsets = batch.pop("offset_mapping", None)  # (B, T, 2) character spans of the tokens
            batch = batch.to(model.device)
            logits = text_logits(model, batch)[:, :-1].float()       # (B, T-1, V): position t predicts t+1
            targets = batch["input_ids"][:, 1:]                       # (B, T-1)
            keep = batch["attention_mask"][:, 1:].bool()              # real (not pad) target tokens
            if terms is not None:
                in_term = torch.zeros_like(keep)
                for b, text in enumerate(chunk):
                    for start, end in _term_spans(text, terms):
                        s, e = offsets[b, 1:, 0], offsets[b, 1:, 1]  # spans of the target tokens
                        in_term[b] |= ((s < end) & (e > start)).to(in_term.device)
                keep &= in_term
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T-1)
            nll = (nll * keep).sum(dim=1)
            out += [(float(n), int(k)) for n, k in zip(nll.tolist(), keep.sum(dim=1).tolist())]
    finally:
        tokenizer.padding_side = side
    return out


def perplexity_from_nll(per_text: list[tuple[float, int]]) -> float:
    """exp(total nll / total tokens) from `text_nll`'s per-text pairs; raises ValueError with no tokens."""
    tokens = sum(k for _, k in per_text)
    if tokens == 0:
        raise ValueError("no scored tokens: the texts contain none of the terms")
    return math.exp(sum(n for n, _ in per_text) / tokens)


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
    """The answer in a completion: "cot" reads the number after "The answer is" (not the first
    number of the working); "direct" reads the number the completion starts with. None if absent."""
    found = re.search(r"The answer is (\d+)", text) if mode == "cot" else re.match(r"\s*(\d+)", text)
    return int(found.group(1)) if found else None


def addition_outputs(model, tokenizer, items: list[dict], mode: str) -> list[str]:
    """The completions of `addition_prompt` for each item (greedy; cut at a newline if direct)."""
    prompts = [addition_prompt(it["a"], it["b"], mode) for it in items]
    return generate(model, tokenizer, prompts, max_new_tokens=COT_MAX_TOKENS if mode == "cot" else 6,
                    stop=None if mode == "cot" else "\n")


def addition_scores(model, tokenizer, items: list[dict], mode: str) -> list[float]:
    """1.0 per item whose parsed answer equals its sum, else 0.0."""
    outputs = addition_outputs(model, tokenizer, items, mode)
    return [float(parse_number(o, mode) == it["sum"]) for o, it in zip(outputs, items)]


def addition_accuracy(model, tokenizer, items: list[dict], mode: str) -> float:
    scores = addition_scores(model, tokenizer, items, mode)
    return sum(scores) / len(scores)


# ---- in-context learning -----------------------------------------------------------------
def icl_prompt(item: dict, shots: int, phrasing: int = 0, sep: str = " -> ") -> str:
    """An instruction (unlike anything in the corpus), `shots` solved examples, then the query."""
    lines = [ICL_PHRASINGS[item["task"]][phrasing]]
    lines += [f"{x}{sep}{y}" for x, y in item["demos"][:shots]]
    lines.append(f"{item['input']}{sep.rstrip()}")
    return "\n".join(lines)


def icl_scores(model, tokenizer, items: list[dict], shots: int, phrasing: int = 0,
               sep: str = " -> ") -> list[float]:
    """1.0 per item whose first output line is exactly its expected output, else 0.0."""
    outputs = generate(model, tokenizer, [icl_prompt(it, shots, phrasing, sep) for it in items], max_new_tokens=8)
    return [float(out.strip() == it["output"]) for out, it in zip(outputs, items)]


def icl_accuracy(model, tokenizer, items: list[dict], shots: int, phrasing: int = 0,
                 sep: str = " -> ") -> dict[str, float]:
    """Exact-match accuracy per task, plus their mean under "mean" (the mean over tasks)."""
    per_task: dict[str, list[float]] = {}
    for score, it in zip(icl_scores(model, tokenizer, items, shots, phrasing, sep), items):
        per_task.setdefault(it["task"], []).append(score)
    scores = {t: sum(v) / len(v) for t, v in sorted(per_task.items())}
    scores["mean"] = sum(scores.values()) / len(scores)
    return scores


# ---- instruction following ---------------------------------------------------------------
def chat_prompt(tokenizer, user: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)


def instruction_scores(model, tokenizer, rows: list[dict], max_new_tokens: int = 24) -> list[float]:
    """1.0 per chat reply that contains the expected answer as a whole word, else 0.0."""
    prompts = [chat_prompt(tokenizer, r["messages"][0]["content"]) for r in rows]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop=None)
    return [float(contains_answer(o, r["answer"])) for o, r in zip(outputs, rows)]


def instruction_accuracy(model, tokenizer, rows: list[dict], max_new_tokens: int = 24) -> float:
    """Share of chat replies that contain the expected answer as a whole word."""
    scores = instruction_scores(model, tokenizer, rows, max_new_tokens)
    return sum(scores) / len(scores)


def completion_scores(model, tokenizer, rows: list[dict], max_new_tokens: int = 16) -> list[float]:
    """1.0 per row whose completion (first line, whitespace stripped) equals `row["answer"]`."""
    outputs = generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=max_new_tokens)
    return [float(o.strip() == r["answer"].strip()) for o, r in zip(outputs, rows)]


def completion_accuracy(model, tokenizer, rows: list[dict], max_new_tokens: int = 16) -> float:
    """Exact match on prompt/completion tasks (the domain, tone and adapter tasks)."""
    scores = completion_scores(model, tokenizer, rows, max_new_tokens)
    return sum(scores) / max(len(scores), 1)


# ---- tone (chapter 2) ----------------------------------------------------------------------
_FUNCTION_WORDS = frozenset("a an the it is was my me i you your yer from to of and hi hello".split())


def _words(text: str) -> set[str]:
    """Lower-case content words (function words such as "a", "it", "my" left out)."""
    return set(re.findall(r"[a-z]+", text.lower())) - _FUNCTION_WORDS


def tone_reply_score(reply: str, row: dict, style: str) -> float:
    """1.0 when `reply` is in `style` (at least two of its markers, `labworld.tasks.tone_of`)
    AND answers this message: it names the customer's item and problem as the reference reply
    `row[style]` does (every content word the message and the reference share, e.g. "bus",
    "stopped", "working"). A pirate reply about someone else's ship scores 0. Else 0.0."""
    from .labworld.tasks import tone_of

    message = row["prompt"].split("Message:", 1)[-1].split("Reply:", 1)[0]
    needed = _words(message) & _words(row[style])
    return float(tone_of(reply, style) and needed <= _words(reply))


def tone_scores(replies: list[str], rows: list[dict], style: str) -> list[float]:
    """`tone_reply_score` per (reply, row), in order."""
    if len(replies) != len(rows):
        raise ValueError(f"tone_scores: {len(replies)} replies for {len(rows)} rows")
    return [tone_reply_score(r, row, style) for r, row in zip(replies, rows)]


# ---- the base model's report card (chapter 0, and the model card) --------------------------
def base_model_report(model, tokenizer, limit: int | None = None, scores: dict | None = None) -> dict[str, float]:
    """Every ability chapter 0 measures, on the held-out evaluation items.
    `limit` caps items per evaluation (e.g. `profile.eval_examples`); None uses them all.
    Pass a dict as `scores` to receive each accuracy's per-item 0/1 scores (for intervals) and,
    under "coverage", (items used, items held out) per metric."""
    from .data import load_rows
    from .labworld.domains import DOMAINS

    scores = {} if scores is None else scores
    coverage = scores.setdefault("coverage", {})

    def take(rows, metric):
        used = rows[:limit] if limit else rows
        coverage[metric] = (len(used), len(rows))
        return used

    def take_per_task(items, metric):  # keep every task represented
        used = items
        if limit:
            by_task: dict[str, list] = {}
            for it in items:
                by_task.setdefault(it["task"], []).append(it)
            used = [it for rows in by_task.values() for it in rows[: max(1, limit // len(by_task))]]
        coverage[metric] = (len(used), len(items))
        return used

    def per_task_mean(item_scores, items):  # the mean over tasks of each task's accuracy
        by_task: dict[str, list[float]] = {}
        for score, it in zip(item_scores, items):
            by_task.setdefault(it["task"], []).append(score)
        return sum(sum(v) / len(v) for v in by_task.values()) / len(by_task)

    additions = take(load_rows("eval", "addition"), "addition")
    icl_items = take_per_task(load_rows("eval", "icl"), "icl")
    novel_items = take_per_task(load_rows("eval", "icl_novel"), "icl_novel")
    for mode in ("direct", "cot"):
        scores[f"addition_{mode}"] = addition_scores(model, tokenizer, additions, mode)
    for name, items in (("icl", icl_items), ("icl_novel", novel_items)):
        for shots in (0, 3):
            scores[f"{name}_{shots}shot"] = icl_scores(model, tokenizer, items, shots)
    scores["instruction_zero_shot"] = instruction_scores(
        model, tokenizer, take(load_rows("instructions", "test"), "instruction_zero_shot"))
    report = {k: sum(v) / len(v) for k, v in scores.items() if k.startswith(("addition", "instruction"))}
    for name, items in (("icl", icl_items), ("icl_novel", novel_items)):
        for shots in (0, 3):
            report[f"{name}_{shots}shot"] = per_task_mean(scores[f"{name}_{shots}shot"], items)
    report["ppl_general"] = perplexity(model, tokenizer, [r["text"] for r in take(load_rows("general", "validation"), "ppl_general")])
    for domain in DOMAINS:
        texts = [r["text"] for r in take(load_rows(f"{domain}_corpus", "validation"), f"ppl_{domain}")]
        report[f"ppl_{domain}"] = perplexity(model, tokenizer, texts)
    for metric in report:  # coverage by metric name: addition_cot is covered as "addition" is
        source = "icl_novel" if metric.startswith("icl_novel") else metric.split("_")[0] \
            if metric.startswith(("addition", "icl_")) else metric
        coverage[metric] = coverage[source]
    for source in ("addition", "icl", "icl_novel"):
        coverage.pop(source)
    return dict(sorted(report.items()))


# ---- preferences and alignment (chapter 6) -------------------------------------------------
def gold_scores(prompts: list[str], responses: list[str], answers: list[str | None]) -> list[float]:
    """LabWorld's gold judge (`labkit.labworld.instructions.gold_judge`, the rule that wrote the
    preference data) on each (prompt, response, answer): one score per item, higher is better
    (+2 refusing an unsafe request or containing the right answer; see its docstring)."""
    from .labworld.instructions import gold_judge

    if not len(prompts) == len(responses) == len(answers):
        raise ValueError(f"gold_scores: {len(prompts)} prompts, {len(responses)} responses and "
                         f"{len(answers)} answers; one of each per item")
    return [gold_judge(p, r, a) for p, r, a in zip(prompts, responses, answers)]


def win_scores(scores_a: list[float], scores_b: list[float]) -> list[float]:
    """Per item: 1 where A's score beats B's, 0.5 for a tie, 0 for a loss. Their mean is A's win
    rate against B (ties split evenly, as in AlpacaEval and MT-Bench pairwise judging)."""
    if len(scores_a) != len(scores_b):
        raise ValueError(f"win_scores: {len(scores_a)} vs {len(scores_b)} scores; pair them per item")
    return [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores_a, scores_b)]


def _chat_texts(tokenizer, prompts: list[str], responses: list[str]) -> list[str]:
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                          tokenize=False) for p, r in zip(prompts, responses)]


@torch.no_grad()
def reward_scores(reward_model, tokenizer, prompts: list[str], responses: list[str],
                  batch_size: int = 32) -> list[float]:
    """A reward model's scalar score for each (user prompt, assistant response) chat, one float per
    item. Tokenized as TRL does when it trains the model (`RewardTrainer`) and when RL queries it
    (`RLOOTrainer`/`GRPOTrainer`): the chat template's text, right-padded, no extra special tokens.
    `reward_model` is an `AutoModelForSequenceClassification` with `num_labels=1`."""
    if len(prompts) != len(responses):
        raise ValueError(f"reward_scores: {len(prompts)} prompts but {len(responses)} responses")
    texts = _chat_texts(tokenizer, prompts, responses)
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    out: list[float] = []
    try:
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(reward_model.device)
            out += reward_model(**batch).logits[:, 0].float().tolist()
    finally:
        tokenizer.padding_side = side
    return out


@torch.no_grad()
def sample_with_kl(policy, reference, tokenizer, prompts: list[str], max_new_tokens: int = 24,
                   batch_size: int = 32, temperature: float = 1.0) -> tuple[list[str], list[float]]:
    """Sample one chat reply per prompt from `policy` (plain sampling: no top-k/top-p) and
    measure how far it has moved from `reference` on it.

    Returns (replies, kl): kl[i] = sum over the reply's tokens t of KL(policy(.|y<t) || reference(.|y<t))
    in nats, the full next-token distributions compared at each sampled prefix. Its mean over
    prompts is an unbiased, low-variance estimate of the sequence-level KL(policy || reference)
    that RLHF penalises (Schulman 2020, "Approximating KL divergence"; Ouyang et al. 2022).
    The reply stops at `<|im_end|>` or the tokenizer's eos (both counted as reply tokens)."""
    stop_ids = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    replies, kls = [], []
    try:
        for i in range(0, len(prompts), batch_size):
            chats = [chat_prompt(tokenizer, p) for p in prompts[i:i + batch_size]]
            batch = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False).to(policy.device)
            ids = policy.generate(**batch, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                  top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_ids)
            n_prompt = batch["input_ids"].shape[1]
            new = ids[:, n_prompt:]                                        # (B, T)
            stopped = torch.isin(new, torch.tensor(stop_ids, device=new.device))
            after_stop = (stopped.cumsum(dim=1) - stopped.long()) > 0      # tokens after the first stop
            reply_mask = ~after_stop                                       # (B, T) reply tokens incl. the stop
            attention = torch.cat([batch["attention_mask"], reply_mask.long()], dim=1)
            kls += (_token_kl(policy, reference, ids, attention, n_prompt) * reply_mask).sum(dim=1).tolist()
            replies += tokenizer.batch_decode(new.masked_fill(after_stop, tokenizer.pad_token_id),
                                              skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return replies, kls


def _token_kl(policy, reference, ids, attention_mask, start: int):
    """(B, T) KL(policy || reference) between the next-token distributions that predict
    ids[:, start:], position by position (T = ids.shape[1] - start), in nats."""
    batch = {"input_ids": ids, "attention_mask": attention_mask}
    logits_p = text_logits(policy, batch)[:, start - 1:-1].float()
    logits_r = text_logits(reference, batch)[:, start - 1:-1].float()
    logp, logr = logits_p.log_softmax(-1), logits_r.log_softmax(-1)  # (B, T, V)
    return (logp.exp() * (logp - logr)).sum(-1)


# ---- per-document scores, for intervals (chapter 4) ---------------------------------------
@torch.no_grad()
def document_nll(model, tokenizer, texts: list[str], max_length: int = 256,
                 batch_size: int = 32) -> tuple[list[float], list[int]]:
    """Per document: the summed next-token negative log-likelihood (nats) and the number of
    tokens scored, both lists of len(texts). `perplexity` is exp(sum(nll) / sum(tokens)) over
    them; keeping them per document lets `labkit.stats.perplexity_difference` resample documents.
    Introduced in chapter 4 (forgetting)."""
    nll_out: list[float] = []
    tokens_out: list[int] = []
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                              max_length=max_length).to(model.device)
            logits = text_logits(model, batch)[:, :-1].float()                # (B, T-1, V)
            labels = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                                                    reduction="none")         # (B, T-1), 0 at padding
            nll_out += nll.sum(dim=1).tolist()
            tokens_out += (labels != -100).sum(dim=1).tolist()
    finally:
        tokenizer.padding_side = side
    return nll_out, tokens_out


# ---- chat turns (chapter 5) ----------------------------------------------------------------
def end_of_turn_id(tokenizer) -> int:
    """The token the chat template puts after an assistant message (`<|im_end|>` in ChatML,
    `<|eot_id|>` in Llama 3), read from the template itself so any chat model works.
    Raises ValueError when the template writes nothing after the assistant's words."""
    marker = "Zq7xW"  # a string no template contains
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": marker}], tokenize=False)
    after = text.split(marker, 1)[1].strip()
    if not after:
        raise ValueError("the chat template writes no end-of-turn marker after the assistant's message")
    return tokenizer(after, add_special_tokens=False)["input_ids"][0]


@torch.no_grad()
def chat_replies(model, tokenizer, users: list[str], max_new_tokens: int = 24,
                 batch_size: int = 32) -> list[tuple[str, bool]]:
    """Greedy replies to single user turns, each as (text, ended): `ended` is True when the model
    emitted the end-of-turn token (or eos) within `max_new_tokens`, i.e. it stopped by itself.
    Introduced in chapter 5 (instruction tuning)."""
    stop_ids = [end_of_turn_id(tokenizer)] + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
    prompts = [chat_prompt(tokenizer, u) for u in users]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out = []
    try:
        for i in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_ids)
            for row in ids[:, batch["input_ids"].shape[1]:].tolist():
                cut = next((k for k, t in enumerate(row) if t in stop_ids), None)
                out.append((tokenizer.decode(row[:cut], skip_special_tokens=True), cut is not None))
    finally:
        tokenizer.padding_side = side
    return out
