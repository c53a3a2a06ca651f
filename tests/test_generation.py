"""labkit.generation: batched generation equals one prompt at a time (left padding; right padding
is the broken variant), stop strings cut at their first occurrence, prompt-learning models (soft
prompts, prefixes) decode exactly greedily, and chat replies say whether the model ended its turn."""
import copy

import pytest
import torch
from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

from labkit import generation
from labkit.generation import chat_replies, end_of_turn_id, generate
from labkit.model import EMBEDDED_MODEL, load_model, resolve_model_path
from labkit.tokenizer import IM_END

PROMPTS = ["Once upon a time,", "What is 358 + 467?\nLet us add digit by digit.\n", "The fox"]


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


# ---- prompt-learning models: exact greedy decoding ----------------------------------------------
PREFIX_PROMPTS = ["Once upon a time,", "Message: Hello, my cup is broken.\nReply:"]


def greedy(step, tokenizer, prompt: str, n: int = 10) -> str:
    """Greedy decoding given `step(ids) -> next-token logits`, recomputing the whole sequence."""
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    start = ids.shape[1]
    for _ in range(n):
        nxt = step(ids).argmax()
        if nxt.item() == tokenizer.eos_token_id:
            break
        ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return tokenizer.decode(ids[0, start:], skip_special_tokens=True)


@torch.no_grad()
def test_soft_prompt_generation_equals_the_base_reading_the_prompt_embeddings_first(embedded):
    base, tokenizer = embedded
    model = get_peft_model(
        load_model()[0],
        PromptTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=10,
            prompt_tuning_init="TEXT",
            prompt_tuning_init_text="cat -> cat cat\ncup -> cup cup\n",
            tokenizer_name_or_path=resolve_model_path(EMBEDDED_MODEL),
        ),
    )
    soft = model.get_prompt(batch_size=1)  # (1, 10, hidden): the virtual tokens' embeddings

    def reference_step(ids):  # no peft in the loop: prepend the soft prompt to the input embeddings
        embeds = torch.cat([soft, base.get_input_embeddings()(ids)], dim=1)
        return base(inputs_embeds=embeds).logits[0, -1]

    prompts = ["fox ->", "owl ->"]
    expected = [greedy(reference_step, tokenizer, p) for p in prompts]
    assert expected != [
        greedy(lambda ids: base(ids).logits[0, -1], tokenizer, p) for p in prompts
    ]  # it steers
    assert generate(model, tokenizer, prompts, max_new_tokens=10, stop=None) == expected


@torch.no_grad()
def test_prefix_generation_equals_the_base_attending_to_the_prefix(embedded):
    torch.manual_seed(0)
    base, tokenizer = embedded
    model = get_peft_model(load_model()[0], PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=8))
    for p in model.parameters():
        if p.requires_grad:
            p.normal_(0, 4.0)  # far from zero, so the prefix visibly steers

    def reference_step(ids):  # no peft in the loop: a fresh cache holding only the prefix's keys and values
        mask = torch.ones(1, 8 + ids.shape[1], dtype=torch.long)
        return base(
            input_ids=ids, past_key_values=model.get_prompt(batch_size=1), attention_mask=mask
        ).logits[0, -1]

    expected = [greedy(reference_step, tokenizer, p) for p in PREFIX_PROMPTS]
    assert expected != [greedy(lambda ids: base(ids).logits[0, -1], tokenizer, p) for p in PREFIX_PROMPTS]
    assert generate(model, tokenizer, PREFIX_PROMPTS, max_new_tokens=10, stop=None) == expected


# ---- chat replies (chapter 5) ------------------------------------------------------------------
def test_chat_replies_report_whether_the_model_ended_its_turn(embedded):
    model, tokenizer = embedded
    assert end_of_turn_id(tokenizer) == tokenizer.convert_tokens_to_ids(IM_END)
    replies = chat_replies(
        model, tokenizer, ["What is the capital of Kesh?", "Add 2 and 3."], max_new_tokens=1
    )
    assert all(isinstance(text, str) for text, _ in replies)
    # One new token that is not the end of turn cannot have ended the turn; force one that is.
    eot = end_of_turn_id(tokenizer)
    with torch_bias(model, eot):
        assert all(
            ended and text == "" for text, ended in chat_replies(model, tokenizer, ["hi"], max_new_tokens=3)
        )
    with torch_bias(model, tokenizer.convert_tokens_to_ids("a") if "a" in tokenizer.get_vocab() else 100):
        assert not any(ended for _, ended in chat_replies(model, tokenizer, ["hi"], max_new_tokens=3))


def test_chat_replies_can_count_only_the_end_of_turn_token(embedded):
    # A base model ends documents with EOS; chapter 5 counts a closed turn only (stop_ids=[eot]).
    model, tokenizer = embedded
    eot = end_of_turn_id(tokenizer)
    assert tokenizer.eos_token_id != eot
    with torch_bias(model, tokenizer.eos_token_id):
        assert all(ended for _, ended in chat_replies(model, tokenizer, ["hi"], max_new_tokens=3))
        assert not any(ended for _, ended in chat_replies(model, tokenizer, ["hi"], max_new_tokens=3,
                                                          stop_ids=[eot]))
    with torch_bias(model, eot):
        assert all(ended for _, ended in chat_replies(model, tokenizer, ["hi"], max_new_tokens=3,
                                                      stop_ids=[eot]))


class torch_bias:
    """Make the model always predict `token_id`: a forward hook adds a large logit to it."""

    def __init__(self, model, token_id):
        self.model, self.token_id = model, token_id

    def _hook(self, module, args, output):
        output[..., self.token_id] += 1e4
        return output

    def __enter__(self):
        self.handle = self.model.get_output_embeddings().register_forward_hook(self._hook)

    def __exit__(self, *exc):
        self.handle.remove()


# ---- stop tokens from the loaded tokenizer; no second BOS -----------------------------------------
# ---- generation: stop tokens and BOS ----------------------------------------------------------
def test_stop_tokens_come_from_the_loaded_tokenizer(embedded):
    """The embedded chat template ends a turn with <|im_end|>; a template that ends turns with EOS
    gives EOS alone, and a tokenizer without a template gives EOS: never the embedded model's
    IM_END constant (the bug: convert_tokens_to_ids("<|im_end|>") on another vocabulary)."""
    _, tokenizer = embedded
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert generation.stop_token_ids(tokenizer) == [eot, tokenizer.eos_token_id]
    other = copy.deepcopy(tokenizer)
    other.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    assert generation.stop_token_ids(other) == [tokenizer.eos_token_id]
    other.chat_template = None
    assert generation.stop_token_ids(other) == [tokenizer.eos_token_id]
    with pytest.raises(ValueError, match="no chat template"):
        generation.chat_prompt(other, "hi")


class _RecordingTokenizer:
    """Wraps a tokenizer and records `add_special_tokens` of every call."""

    def __init__(self, tokenizer, bos):
        self._t, self.bos_token, self.calls = tokenizer, bos, []

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs.get("add_special_tokens", True))
        return self._t(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._t, name)

    def __setattr__(self, name, value):
        if name in ("_t", "bos_token", "calls"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._t, name, value)


def test_a_rendered_chat_prompt_gets_no_second_bos(embedded):
    """A prompt that already starts with the BOS text (a chat template that writes it) is tokenized
    without special tokens, as TRL does; a plain prompt keeps them (the tokenizer's own choice)."""
    model, tokenizer = embedded
    wrapped = _RecordingTokenizer(tokenizer, bos="<|im_start|>")
    generation._generate_padded(model, wrapped, [generation.chat_prompt(tokenizer, "hi")], 2, 4,
                                generation.stop_token_ids(tokenizer))
    generation._generate_padded(model, wrapped, ["Plain text"], 2, 4, generation.stop_token_ids(tokenizer))
    assert wrapped.calls == [False, True]


def test_padding_side_is_restored_even_on_error(embedded):
    _, tokenizer = embedded
    before = tokenizer.padding_side
    with pytest.raises(RuntimeError):
        with generation.padding_side(tokenizer, "left" if before == "right" else "right"):
            raise RuntimeError("boom")
    assert tokenizer.padding_side == before


def test_a_lone_surrogate_is_a_clear_error_naming_the_item(embedded):
    """The tokenizer raises an unhelpful TypeError on a lone surrogate; the lab names item and position."""
    from labkit.likelihood import perplexity

    model, tokenizer = embedded
    bad = "Smile \ud83d please"
    with pytest.raises(ValueError, match=r"prompt 1 has a lone surrogate '\\ud83d' at character 6"):
        generate(model, tokenizer, ["fine", bad], max_new_tokens=2)
    with pytest.raises(ValueError, match="text 0 has a lone surrogate"):
        perplexity(model, tokenizer, [bad])
