"""Scoring a model's answers (chapter 0 introduces each score; later chapters reuse them).

One scorer per kind of answer, each returning one 0/1 score per item in item order (their mean is
the accuracy; comparative claims pass the per-item scores to `labkit.stats` for a paired interval):

- `completion_scores`: exact match of a completion's first line (every prompt/completion task:
  domains, tone, adapters, distillation); `exact_match_scores` is the comparison itself.
- `chrf_scores`: character n-gram F-score (chrF, sacrebleu) per output, for free-form text such
  as a translation, where exact match gives no credit to an answer that is nearly right (chapter 9).
- `instruction_scores`: a chat reply that contains the answer as a whole word.
- `addition_scores`, `icl_scores`: chapter 0's abilities (chain of thought, in-context learning).
- `tone_scores`: chapter 2's replies in a style that answer the message.

tests/test_scoring.py pins each against its plausible broken variant.
"""
from __future__ import annotations

import re
import unicodedata

from .generation import chat_prompt, generate
from .labworld.general import COT_CUE, DIRECT_CUE, ICL_PHRASINGS, addition_question


def _same_length(what: str, outputs, answers) -> None:
    if len(outputs) != len(answers):
        raise ValueError(f"{what}: {len(outputs)} outputs for {len(answers)} answers; "
                         "give one output per answer")


def exact_match_scores(outputs: list[str], answers: list[str]) -> list[float]:
    """1.0 per output equal to its answer (surrounding whitespace ignored), else 0.0.
    Raises ValueError when the lists differ in length."""
    _same_length("exact_match_scores", outputs, answers)
    return [float(o.strip() == a.strip()) for o, a in zip(outputs, answers)]


def exact_match(outputs: list[str], answers: list[str]) -> float:
    """The share of outputs equal to their answer (`exact_match_scores`' mean). Raises ValueError
    for lists of different lengths or empty lists (an accuracy over nothing is undefined)."""
    scores = exact_match_scores(outputs, answers)
    if not scores:
        raise ValueError("exact_match: no outputs to score (got empty lists)")
    return sum(scores) / len(scores)


def _fold(text: str) -> str:
    """Case-folded, NFKC-normalized text: 'İzmir' and 'izmir', 'Straße' and 'STRASSE' compare equal."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    undotted = unicodedata.normalize("NFD", folded).replace("\u0307", "")  # İ folds to i + a combining dot
    return unicodedata.normalize("NFC", undotted)


def chrf_scores(outputs: list[str], answers: list[str]) -> list[float]:
    """Sentence-level chrF (Popovic 2015) of each output against its one reference, on sacrebleu's
    0-100 scale (`sacrebleu.sentence_chrf`: character 6-grams, beta = 2, whitespace ignored),
    in item order; their mean is the per-item average, not sacrebleu's corpus-level chrF (which
    pools n-gram counts). 100 = identical text (surrounding whitespace stripped), 0 = no
    character n-gram in common. Raises ValueError when the lists differ in length."""
    from sacrebleu.metrics import CHRF

    _same_length("chrf_scores", outputs, answers)
    chrf = CHRF()
    return [float(chrf.sentence_score(o.strip(), [a.strip()]).score) for o, a in zip(outputs, answers)]


def contains_answer(output: str, answer: str) -> bool:
    """Whole-word, case-insensitive (Unicode case folding): "18" does not match "118"."""
    return re.search(rf"(?<![\w]){re.escape(_fold(answer))}(?![\w])", _fold(output)) is not None


def completion_scores(model, tokenizer, rows: list[dict], max_new_tokens: int = 16,
                      batch_size: int = 32) -> list[float]:
    """The lab's exact-match scorer for prompt/completion tasks: 1.0 per row whose greedy completion
    (first line, whitespace stripped) equals `row["answer"]`, else 0.0."""
    outputs = generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=max_new_tokens,
                       batch_size=batch_size)
    return exact_match_scores(outputs, [r["answer"] for r in rows])


def instruction_scores(model, tokenizer, rows: list[dict], max_new_tokens: int = 24) -> list[float]:
    """1.0 per chat reply that contains the expected answer as a whole word, else 0.0."""
    prompts = [chat_prompt(tokenizer, r["messages"][0]["content"]) for r in rows]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop=None)
    return [float(contains_answer(o, r["answer"])) for o, r in zip(outputs, rows)]


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
    outputs = generate(model, tokenizer, [icl_prompt(it, shots, phrasing, sep) for it in items],
                       max_new_tokens=8)
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
