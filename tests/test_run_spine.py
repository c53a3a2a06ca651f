"""The run spine every chapter shares: stop tokens from the loaded tokenizer, no second BOS, one NLL
kernel behind three views, one exact-match comparison, one way to record a run, one balanced
subset, and side computations that leave the random streams alone. Each test fails on the broken
variant it names."""
import copy
import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from labkit import generation
from labkit.data import balanced
from labkit.likelihood import document_nll, perplexity, perplexity_from_nll, text_nll, token_nll
from labkit.measure import measure, record_run
from labkit.runtime import same_random_stream
from labkit.scoring import contains_answer, exact_match, exact_match_scores


# ---- generation: stop tokens and BOS ----------------------------------------------------------
def test_stop_tokens_come_from_the_loaded_tokenizer(embedded):
    """The embedded chat template ends a turn with <|im_end|>; a template that ends turns with EOS
    gives EOS alone, and a tokenizer without a template gives EOS: never the embedded model's
    IM_END constant (the bug: convert_tokens_to_ids("<|im_end|>") on another vocabulary)."""
    _, tokenizer = embedded
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert generation.stop_token_ids(tokenizer) == [eot, tokenizer.eos_token_id]
    other = copy.deepcopy(tokenizer)
    other.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
                           "{% if add_generation_prompt %}assistant: {% endif %}")
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


# ---- likelihood: one kernel, three views --------------------------------------------------------
def test_three_views_of_one_kernel_agree(embedded):
    model, tokenizer = embedded
    texts = ["The court held that the company is liable.", "Seven plus five is twelve.", "A short one."]
    pairs = token_nll(model, tokenizer, texts, batch_size=2)
    nll, tokens = document_nll(model, tokenizer, texts)
    assert text_nll(model, tokenizer, texts, batch_size=2) == pairs
    assert [k for _, k in pairs] == tokens and np.allclose([n for n, _ in pairs], nll, rtol=1e-6)
    assert perplexity(model, tokenizer, texts) == pytest.approx(math.exp(sum(nll) / sum(tokens)), rel=1e-6)
    assert perplexity_from_nll(pairs) == pytest.approx(perplexity(model, tokenizer, texts), rel=1e-6)
    # each text scores every token after its first: a kernel that scored padding or the first token fails
    assert tokens == [len(tokenizer(t)["input_ids"]) - 1 for t in texts]


def test_a_text_past_the_models_positions_is_a_clear_error(make_tiny_llama, embedded):
    _, tokenizer = embedded
    model = make_tiny_llama(vocab_size=len(tokenizer), max_position_embeddings=8)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        perplexity(model, tokenizer, ["word " * 40])


# ---- scoring: one exact-match comparison --------------------------------------------------------
def test_exact_match_refuses_lists_that_do_not_pair():
    assert exact_match_scores([" Ann ", "Bo"], ["Ann", "Bob"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="3 outputs for 1 answers"):
        exact_match(["a", "b", "c"], ["a"])  # zip would have scored 1.0
    with pytest.raises(ValueError, match="no outputs"):
        exact_match([], [])


@pytest.mark.parametrize("output, answer, expected", [
    ("I live in İzmir.", "izmir", True),       # Unicode case folding, not str.lower()
    ("STRASSE 5", "straße", True),
    ("café au lait", "cafe", False),           # accents still count
    ("It was 118 km.", "18", False),           # whole word
    ("The answer is 18.", "18", True),
])
def test_contains_answer_folds_case_as_unicode_does(output, answer, expected):
    assert contains_answer(output, answer) is expected


# ---- data: one balanced subset -------------------------------------------------------------------
def test_balanced_takes_the_same_number_from_every_group_in_order():
    rows = [{"task": t, "i": i} for i, t in enumerate("aaaabbbbcc")]
    picked = balanced(rows, 6, "task")
    assert [r["i"] for r in picked] == [0, 1, 4, 5, 8, 9]
    assert [r["task"] for r in balanced(rows, 6, "task", groups=["c", "a"])] == ["c", "c", "a", "a", "a"]
    assert len(balanced(rows, 1, "task")) == 3  # at least one from every group


# ---- measure: one way to record a run -----------------------------------------------------------
def test_record_run_reads_the_trainer_and_counts_only_what_trained(tiny_llama):
    trainer = SimpleNamespace(state=SimpleNamespace(
        global_step=3, num_input_tokens_seen=120,
        log_history=[{"step": 1, "loss": 2.5}, {"step": 3, "loss": 1.5}, {"step": 3, "eval_loss": 9.0}]))
    with measure("demo", device="cpu") as m:
        pass
    run = record_run(m, tiny_llama, trainer, method="full_ft", train_examples=6, metrics={"accuracy": 0.5},
                     info={"base_model": "tiny"})
    total = sum(p.numel() for p in tiny_llama.parameters())
    assert run["trainable_params"] == run["total_params"] == total
    assert run["steps"] == 3 and run["train_tokens"] == 120 and run["loss_history"] == [[1, 2.5], [3, 1.5]]
    assert run["base_model"] == "tiny" and run["metrics"] == {"accuracy": 0.5}
    evaluation = record_run(m, tiny_llama, method="prompting", train_examples=0, info={"base_model": "tiny"})
    assert evaluation["trainable_params"] == 0 and "steps" not in evaluation and "loss_history" not in evaluation


# ---- runtime: side computations leave the random streams alone ---------------------------------
def test_same_random_stream_restores_python_numpy_and_torch():
    def draw():
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    def seeded():
        random.seed(1), np.random.seed(1), torch.manual_seed(1)

    seeded()
    expected = draw()
    seeded()
    with same_random_stream():
        from transformers import set_seed

        set_seed(99)  # what a Trainer's constructor does
        draw()
    assert draw() == expected
