"""Generating text from a model (chapter 0 introduces it; every chapter that scores replies uses it).

One padded-generation core, `_generate_padded`, behind plain completions (`generate`) and chat
replies (`chat_replies`): prompts are left-padded in batches, decoding stops at the loaded
tokenizer's own stop tokens (`stop_token_ids`: the chat template's end-of-turn token and EOS, read
from the tokenizer, never from the embedded model's constants), and a prompt the chat template
already rendered is tokenized without a second BOS (`add_special_tokens=False`, as TRL does).

    replies = generate(model, tokenizer, ["Question: ...\nAnswer:"], max_new_tokens=16)
    turns = chat_replies(model, tokenizer, ["What is 2 + 3?"])   # [(text, ended), ...]
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def padding_side(tokenizer, side: str) -> Iterator[None]:
    """Set `tokenizer.padding_side` to "left" (generation) or "right" (scoring) for the block,
    and restore it afterwards, even on error."""
    saved, tokenizer.padding_side = tokenizer.padding_side, side
    try:
        yield
    finally:
        tokenizer.padding_side = saved


def has_virtual_tokens(model) -> bool:
    """True for peft prompt-learning models (prompt tuning, prefix tuning, p-tuning)."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def chat_prompt(tokenizer, chat: str | list[dict]) -> str:
    """A conversation rendered by the tokenizer's chat template, ending where the assistant's reply
    starts (`add_generation_prompt=True`). `chat` is one user turn (a string) or a list of
    `{"role", "content"}` messages. Raises ValueError for a tokenizer without a template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template: chat prompts need a chat (instruct) "
                         "model, or a tokenizer with `chat_template` set")
    messages = [{"role": "user", "content": chat}] if isinstance(chat, str) else chat
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


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


def stop_token_ids(tokenizer) -> list[int]:
    """The tokens that end a generation: the chat template's end-of-turn token (when the tokenizer
    has a template) and EOS, in that order, without repeats. Raises ValueError when there is none."""
    ids = []
    if getattr(tokenizer, "chat_template", None):
        try:
            ids.append(end_of_turn_id(tokenizer))
        except ValueError:
            pass  # a template with no end-of-turn marker: EOS alone ends a reply
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the tokenizer has neither an EOS token nor a chat template: nothing can "
                         "end a generation")
    return ids


def check_texts(texts: list[str], what: str = "prompt") -> None:
    """Raise ValueError, naming the item and the position, for a text the tokenizer cannot encode:
    a lone surrogate (e.g. half of an emoji cut by a byte-level slice, '\\ud83d') or a non-string.
    The tokenizer itself fails with an unhelpful TypeError on those."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{what} {i} is a {type(text).__name__}, not a string")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{what} {i} has a lone surrogate {text[err.start]!r} at character {err.start} "
                             f"(…{text[max(0, err.start - 20):err.start]!r}): not valid Unicode text; "
                             "fix the string (e.g. .encode('utf-8', 'replace').decode())") from None


def _renders_bos(tokenizer, prompts: list[str]) -> bool:
    """True when the prompts already start with the tokenizer's BOS text (a chat template that
    writes it): tokenizing them with special tokens would add a second BOS."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and all(p.startswith(bos) for p in prompts)


@torch.no_grad()
def _greedy_recompute(model, tokenizer, prompt: str, max_new_tokens: int, stop_ids: list[int],
                      add_special_tokens: bool = True) -> list[int]:
    """Greedy decoding that feeds the whole sequence through the model at every step (no KV cache,
    no padding): what `model(...)` computes in training, one token at a time."""
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special_tokens)["input_ids"]
    ids = ids.to(model.device)
    new: list[int] = []
    for _ in range(max_new_tokens):
        nxt = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].argmax()
        if nxt.item() in stop_ids:
            break
        new.append(nxt.item())
        ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return new


@torch.no_grad()
def _generate_padded(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int,
                     stop_ids: list[int], do_sample: bool = False, temperature: float = 1.0,
                     top_k: int | None = None) -> list[list[int]]:
    """The one generation core: `model.generate` on left-padded batches of `prompts`; per prompt,
    the new token ids (up to `max_new_tokens`, padding after a stop token included)."""
    check_texts(prompts)
    special = not _renders_bos(tokenizer, prompts)
    sampling = dict(do_sample=True, temperature=temperature, top_k=top_k) if do_sample else \
        dict(do_sample=False, temperature=None, top_k=None)
    rows: list[list[int]] = []
    with padding_side(tokenizer, "left"):
        for i in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=special).to(model.device)
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, **sampling,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_ids)
            rows += ids[:, batch["input_ids"].shape[1]:].tolist()
    return rows


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 16, batch_size: int = 32,
             stop: str | None = "\n", do_sample: bool = False, temperature: float = 1.0) -> list[str]:
    """Complete each prompt; the decoded text after the prompt, cut at the string `stop`
    (None: keep everything up to a stop token). Sampling uses top-k 40.

    Soft prompts and prefixes (peft prompt learning) decode greedily with `_greedy_recompute`:
    in this stack (peft 0.21, transformers 5) their `model.generate` keeps only the first token
    right and garbles the rest, with or without the KV cache (peft issues #1391, #2123; measured
    in tests/test_generation.py against references built without peft's generate).
    Raises NotImplementedError for sampling from such a model.
    """
    stop_ids = stop_token_ids(tokenizer)
    if has_virtual_tokens(model):
        check_texts(prompts)
        if do_sample:
            raise NotImplementedError("sampling from a prompt-tuned or prefix-tuned model: "
                                      "use greedy decoding")
        special = not _renders_bos(tokenizer, prompts)
        rows = [_greedy_recompute(model, tokenizer, p, max_new_tokens, stop_ids, special) for p in prompts]
    else:
        rows = _generate_padded(model, tokenizer, prompts, max_new_tokens, batch_size, stop_ids,
                                do_sample, temperature, top_k=40)
    texts = tokenizer.batch_decode(rows, skip_special_tokens=True)
    return [t.split(stop)[0] if stop else t for t in texts]


@torch.no_grad()
def chat_replies(model, tokenizer, chats: list[str | list[dict]], max_new_tokens: int = 24,
                 batch_size: int = 32, stop_ids: list[int] | None = None) -> list[tuple[str, bool]]:
    """Greedy replies to chats (each a user turn, or a list of messages: `chat_prompt`), each as
    (text, ended): `ended` is True when the model emitted a stop token within `max_new_tokens`,
    i.e. it stopped by itself. `stop_ids` are the tokens that end a reply (default
    `stop_token_ids`: end of turn or EOS); pass `[end_of_turn_id(tokenizer)]` to count only a
    closed turn (chapter 5: a base model emits EOS at the end of a document, not a turn).
    Introduced in chapter 5."""
    stop_ids = stop_token_ids(tokenizer) if stop_ids is None else list(stop_ids)
    rows = _generate_padded(model, tokenizer, [chat_prompt(tokenizer, c) for c in chats],
                            max_new_tokens, batch_size, stop_ids)
    out = []
    for row in rows:
        cut = next((k for k, t in enumerate(row) if t in stop_ids), None)
        out.append((tokenizer.decode(row[:cut], skip_special_tokens=True), cut is not None))
    return out
