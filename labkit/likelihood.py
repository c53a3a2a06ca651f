"""How likely a model finds a text (chapter 0 introduces perplexity; chapters 4 and 7 score
documents and jargon with it).

One kernel, `token_nll`, computes the next-token negative log-likelihood of every text (teacher
forcing, right padding never scored, the soft prompt of a prompt-tuned model skipped); the three
views of it are

    perplexity(model, tokenizer, texts)   -> float: exp(total nll / total tokens)
    text_nll(model, tokenizer, texts)     -> [(nll, tokens), ...] per text (optionally jargon only)
    document_nll(model, tokenizer, texts) -> ([nll, ...], [tokens, ...]) per document
    text_and_term_nll(model, tokenizer, texts, terms) -> text_nll without and with terms, one pass

Per-text values let a comparison carry a paired interval (`labkit.stats.perplexity_difference`).
"""
from __future__ import annotations

import math
import re

import torch

from .generation import check_texts, padding_side


def text_logits(model, batch) -> torch.Tensor:
    """Logits for the text positions only, shape (batch, text_len, vocab).

    Prompt tuning and p-tuning (peft) put their virtual tokens in front of the text, so the
    model's logits carry one extra position per virtual token; those come first and are dropped
    here, so position t of the result predicts text token t+1, as for a plain model. Prefix tuning
    adds keys and values, not positions: nothing to drop. Pair these logits with labels instead of
    `model(**batch).logits` wherever a model may be prompt-tuned. Raises ValueError when the model
    returns fewer positions than tokens.
    """
    logits = model(**batch).logits
    extra = logits.shape[1] - batch["input_ids"].shape[1]  # peft's num_virtual_tokens, or 0
    if extra < 0:
        raise ValueError(f"the model returned {logits.shape[1]} positions "
                         f"for {batch['input_ids'].shape[1]} tokens")
    return logits[:, extra:]


def _term_spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """Character spans [start, end) of every whole-word, case-insensitive occurrence of a term."""
    spans = []
    for term in terms:
        spans += [m.span() for m in re.finditer(rf"(?<![\w]){re.escape(term)}(?![\w])", text, re.IGNORECASE)]
    return spans


def _check_length(model, length: int, max_length: int) -> None:
    """Raise ValueError when a text of `length` tokens is past the model's positions: scoring it
    would read position embeddings the model never learned (or crash) instead of failing clearly."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit is not None and length > limit:
        raise ValueError(f"a text of {length} tokens is longer than the model's {limit} positions "
                         f"(config.max_position_embeddings): pass max_length={limit} or less "
                         f"(got max_length={max_length})")


@torch.no_grad()
def token_nll(model, tokenizer, texts: list[str], terms: list[str] | None = None, max_length: int = 256,
              batch_size: int = 32) -> list[tuple[float, int]]:
    """The kernel: per text, (summed next-token negative log-likelihood in nats, tokens scored).

    Each text is truncated to `max_length` tokens; every token after the first is predicted from
    the ones before it; padding is never scored. With `terms`, only the tokens whose characters
    overlap a whole-word, case-insensitive occurrence of a term count (a text without one scores
    (0.0, 0)). Raises ValueError for `terms` without a fast tokenizer (character offsets), or a
    `max_length` beyond the model's positions.
    """
    whole, in_terms = _nll_pairs(model, tokenizer, texts, terms, max_length, batch_size)
    return whole if terms is None else in_terms


@torch.no_grad()
def _nll_pairs(model, tokenizer, texts: list[str], terms: list[str] | None, max_length: int,
               batch_size: int) -> tuple[list[tuple[float, int]], list[tuple[float, int]] | None]:
    """`token_nll`'s loop, one forward pass per batch: per text, (nll, tokens) over every token, and
    with `terms` also over the term tokens only (else None)."""
    if terms is not None and not getattr(tokenizer, "is_fast", False):
        raise ValueError("text_nll(terms=...) needs a fast tokenizer (offset mapping); "
                         "load it with use_fast=True")
    check_texts(texts, "text")
    whole: list[tuple[float, int]] = []
    in_terms: list[tuple[float, int]] = []
    with padding_side(tokenizer, "right"):
        for i in range(0, len(texts), batch_size):
            chunk = texts[i:i + batch_size]
            batch = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True,
                              max_length=max_length, return_offsets_mapping=terms is not None)
            offsets = batch.pop("offset_mapping", None)  # (B, T, 2) character spans of the tokens
            _check_length(model, batch["input_ids"].shape[1], max_length)
            batch = batch.to(model.device)
            logits = text_logits(model, batch)[:, :-1].float()       # (B, T-1, V): position t predicts t+1
            targets = batch["input_ids"][:, 1:]                       # (B, T-1)
            keep = batch["attention_mask"][:, 1:].bool()              # real (not pad) target tokens
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets,
                                                    reduction="none")  # (B, T-1)
            whole += _sums(nll, keep)
            if terms is not None:
                in_term = torch.zeros_like(keep)
                for b, text in enumerate(chunk):
                    for start, end in _term_spans(text, terms):
                        s, e = offsets[b, 1:, 0], offsets[b, 1:, 1]  # spans of the target tokens
                        in_term[b] |= ((s < end) & (e > start)).to(in_term.device)
                in_terms += _sums(nll, keep & in_term)
    return whole, (in_terms if terms is not None else None)


def _sums(nll: torch.Tensor, keep: torch.Tensor) -> list[tuple[float, int]]:
    """Per row of (B, T-1) token losses: (sum over the kept tokens, number kept)."""
    return [(float(n), int(k)) for n, k in zip((nll * keep).sum(dim=1).tolist(), keep.sum(dim=1).tolist())]


def text_and_term_nll(model, tokenizer, texts: list[str], terms: list[str], max_length: int = 256,
                      batch_size: int = 32) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """`(text_nll(texts), text_nll(texts, terms=terms))` from one forward pass per batch instead of
    two (chapter 7 scores a domain's documents and their jargon): two lists of per-text (summed nll
    in nats, tokens scored), equal to those two calls. Raises ValueError as `token_nll` does."""
    return _nll_pairs(model, tokenizer, texts, terms, max_length, batch_size)


def perplexity_from_nll(per_text: list[tuple[float, int]]) -> float:
    """exp(total nll / total tokens) from `token_nll`'s per-text pairs; raises ValueError with no tokens."""
    tokens = sum(k for _, k in per_text)
    if tokens == 0:
        raise ValueError("nothing to score: no text has a token to predict (each needs at least two "
                         "tokens, and with `terms`, an occurrence of a term)")
    return math.exp(sum(n for n, _ in per_text) / tokens)


def perplexity(model, tokenizer, texts: list[str], max_length: int = 256, batch_size: int = 32) -> float:
    """exp(mean next-token loss) over all tokens of `texts` (each truncated to `max_length`).
    For a prompt-tuned model only the text tokens are scored, after the soft prompt.
    Raises ValueError when there is nothing to score: no texts, or none with two tokens or more."""
    if len(texts) == 0:
        raise ValueError("perplexity: no texts to score (got an empty list)")
    per_text = token_nll(model, tokenizer, texts, max_length=max_length, batch_size=batch_size)
    if sum(k for _, k in per_text) == 0:
        raise ValueError(f"perplexity: nothing to score: none of the {len(texts)} text(s) has a next token "
                         "to predict (each needs at least two tokens)")
    return perplexity_from_nll(per_text)


def text_nll(model, tokenizer, texts: list[str], terms: list[str] | None = None, max_length: int = 256,
             batch_size: int = 32) -> list[tuple[float, int]]:
    """Per text, (summed nll in nats, tokens scored): `token_nll`. Without `terms`,
    `perplexity_from_nll(text_nll(...))` equals `perplexity(...)`; with `terms` (e.g. a domain's
    jargon, chapter 7) it is the perplexity of the jargon itself."""
    return token_nll(model, tokenizer, texts, terms=terms, max_length=max_length, batch_size=batch_size)


def document_nll(model, tokenizer, texts: list[str], max_length: int = 256,
                 batch_size: int = 32) -> tuple[list[float], list[int]]:
    """Per document: the summed nll (nats) and the number of tokens scored, as two lists of
    len(texts), the form `labkit.stats.perplexity_difference` resamples (chapter 4, forgetting)."""
    pairs = token_nll(model, tokenizer, texts, max_length=max_length, batch_size=batch_size)
    return [n for n, _ in pairs], [k for _, k in pairs]
