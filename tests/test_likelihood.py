"""labkit.likelihood: one NLL kernel behind perplexity, text_nll and document_nll. Each is pinned
against an unpadded, unbatched reference; perplexity pools tokens (per-sequence averaging and
unmasked pads are the broken variants), scores only the text behind a soft prompt or a prefix, and
nothing to score is an error; text_nll scores whole texts or only the tokens of given terms."""
import math

import numpy as np
import pytest
import torch
from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model

from labkit.alignment import _token_kl
from labkit.data import load_rows
from labkit.likelihood import (
    document_nll,
    perplexity,
    perplexity_from_nll,
    text_and_term_nll,
    text_logits,
    text_nll,
    token_nll,
)
from labkit.model import load_model


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
    assert perplexity(model, tokenizer, texts[:1]) == pytest.approx(
        math.exp(parts[0][0] / parts[0][1]), rel=1e-5
    )

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


# ---- behind a soft prompt or a prefix; nothing to score -----------------------------------------
def _texts(n=4):
    return [r["text"] for r in load_rows("general", "validation")[:n]]


def _reference_ppl(tokenizer, texts, logits_of):
    """exp(mean NLL) text by text (no padding, no batching): `logits_of(ids)` gives the logits
    of the text positions only, (1, T, V)."""
    nll, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        logits = logits_of(ids)[0, :-1]
        nll += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
        count += ids.shape[1] - 1
    return math.exp(nll / count)


@torch.no_grad()
@pytest.mark.parametrize("config", [
    PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
    PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, encoder_hidden_size=16),
], ids=["prompt_tuning", "p_tuning"])
def test_soft_prompt_perplexity_scores_the_text_after_the_virtual_tokens(embedded, config):
    """The issue's case: a fresh 4-token soft prompt on the first 4 general-validation texts.
    Reference without peft in the loop: feed the soft prompt's embeddings, then the text's, and
    drop the 4 soft-prompt positions before pairing logits with the text's next tokens."""
    base, tokenizer = embedded
    torch.manual_seed(0)
    model = get_peft_model(load_model()[0], config).eval()
    soft = model.get_prompt(batch_size=1)  # (1, 4, hidden)
    assert soft.shape[1] == 4
    texts = _texts()

    def reference(ids):
        embeds = torch.cat([soft, base.get_input_embeddings()(ids)], dim=1)
        return base(inputs_embeds=embeds).logits[:, 4:]

    expected = _reference_ppl(tokenizer, texts, reference)
    plain = _reference_ppl(tokenizer, texts, lambda ids: base(ids).logits)
    # A fresh soft prompt moves the score little (about 4e-4 relative here), but 40x more than the
    # tolerance (float32 sums per text, batched: 5e-6 apart here), so scoring without the soft prompt
    # would fail; misaligned logits fail by far.
    assert abs(expected - plain) > 1e-4 * plain
    assert perplexity(model, tokenizer, texts, batch_size=3) == pytest.approx(expected, rel=1e-5)


@torch.no_grad()
def test_prefix_tuning_perplexity_matches_the_base_attending_to_the_prefix(embedded):
    base, tokenizer = embedded
    torch.manual_seed(0)
    model = get_peft_model(
        load_model()[0], PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    ).eval()
    for p in model.parameters():
        if p.requires_grad:
            p.normal_(0, 2.0)

    def reference(ids):
        mask = torch.ones(1, 4 + ids.shape[1], dtype=torch.long)
        return base(input_ids=ids, past_key_values=model.get_prompt(batch_size=1), attention_mask=mask).logits

    texts = _texts()
    assert perplexity(model, tokenizer, texts, batch_size=3) == pytest.approx(
        _reference_ppl(tokenizer, texts, reference), rel=1e-5)


@torch.no_grad()
def test_plain_model_perplexity_is_unchanged_by_batching_and_padding(embedded):
    base, tokenizer = embedded
    texts = _texts(5)
    expected = _reference_ppl(tokenizer, texts, lambda ids: base(ids).logits)
    assert perplexity(base, tokenizer, texts, batch_size=2) == pytest.approx(expected, rel=1e-5)


def test_text_logits_drops_exactly_the_virtual_positions(embedded):
    _, tokenizer = embedded
    model = get_peft_model(load_model()[0], PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    batch = tokenizer(["the cat sat", "a dog"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1] + 3
        assert text_logits(model, batch).shape[:2] == batch["input_ids"].shape


@pytest.mark.parametrize("texts, message", [
    ([], "no texts to score"),
    (["7"], "nothing to score: none of the 1 text"),
])
def test_nothing_to_score_is_a_clear_error(embedded, texts, message):
    base, tokenizer = embedded
    assert texts == [] or len(tokenizer(texts[0])["input_ids"]) == 1
    with pytest.raises(ValueError, match=message):
        perplexity(base, tokenizer, texts)


def test_a_one_token_text_among_others_is_skipped_not_fatal(embedded):
    base, tokenizer = embedded
    texts = _texts(2)
    assert perplexity(base, tokenizer, ["7"] + texts) == pytest.approx(
        perplexity(base, tokenizer, texts), rel=1e-6
    )


@torch.no_grad()
def test_every_scorer_that_pairs_logits_with_labels_skips_the_virtual_tokens(embedded):
    """text_nll, document_nll and the KL along sampled replies pair logits with tokens too: on a
    prompt-tuned model each must agree with `perplexity` (checked against a reference above),
    not fail on the 4 extra positions."""
    _, tokenizer = embedded
    torch.manual_seed(0)
    model = get_peft_model(
        load_model()[0], PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    ).eval()
    texts = _texts()
    expected = perplexity(model, tokenizer, texts, batch_size=3)
    # float32 sums per text: agreement to 1e-5 (a misaligned pairing is off by orders of magnitude)
    per_text = text_nll(model, tokenizer, texts, batch_size=3)
    assert math.exp(sum(n for n, _ in per_text) / sum(k for _, k in per_text)) == pytest.approx(
        expected, rel=1e-5
    )
    nll, tokens = document_nll(model, tokenizer, texts, batch_size=3)
    assert math.exp(sum(nll) / sum(tokens)) == pytest.approx(expected, rel=1e-5)
    batch = tokenizer(texts[:2], return_tensors="pt", padding=True)
    kl = _token_kl(model, model, batch["input_ids"], batch["attention_mask"], start=3)
    assert kl.shape == (2, batch["input_ids"].shape[1] - 3) and kl.abs().max() < 1e-5


# ---- text_nll (chapter 7): per-text and per-term next-token losses ---------------------------------
TEXTS = ["Started on zanthrel 200 mg twice daily.", "Patient Nora Frost presented with edema.",
         "The fox ran home."]


@torch.no_grad()
def _per_token_nll(model, tokenizer, text):
    """One text, unpadded: the nll of each target token (positions 1..T-1) and its offsets."""
    enc = tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
    offsets = enc.pop("offset_mapping")[0, 1:]
    logits = model(**enc).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits, enc["input_ids"][0, 1:], reduction="none")
    return nll, offsets


def test_all_tokens_match_perplexity_and_an_unpadded_reference(embedded):
    model, tokenizer = embedded
    per_text = text_nll(model, tokenizer, TEXTS, batch_size=2)  # padding inside a batch
    assert math.isclose(perplexity_from_nll(per_text), perplexity(model, tokenizer, TEXTS), rel_tol=1e-5)
    for (nll, n), text in zip(per_text, TEXTS):
        ref, _ = _per_token_nll(model, tokenizer, text)
        assert n == len(ref)  # T - 1 targets: counting the first token too would be off by one
        assert math.isclose(nll, ref.sum().item(), rel_tol=1e-4)


def test_terms_score_only_the_tokens_of_the_terms(embedded):
    model, tokenizer = embedded
    terms = ["zanthrel", "EDEMA"]  # case-insensitive
    per_text = text_nll(model, tokenizer, TEXTS, terms=terms)
    for (nll, n), text in zip(per_text, TEXTS):
        ref, offsets = _per_token_nll(model, tokenizer, text)
        low = text.lower()
        spans = [(low.index(t.lower()), low.index(t.lower()) + len(t)) for t in terms if t.lower() in low]
        mask = torch.zeros(len(ref), dtype=torch.bool)
        for a, b in spans:
            mask |= (offsets[:, 0] < b) & (offsets[:, 1] > a)
        assert n == int(mask.sum()) and (n > 0) == bool(spans)
        assert math.isclose(nll, ref[mask].sum().item(), rel_tol=1e-4, abs_tol=1e-6)
    # the term tokens are a strict subset: scoring them all would give the whole text's count
    assert per_text[0][1] < text_nll(model, tokenizer, TEXTS[:1])[0][1]


def test_text_and_term_nll_is_the_two_calls_in_one_pass(embedded):
    model, tokenizer = embedded
    terms = ["zanthrel", "EDEMA"]
    whole, jargon = text_and_term_nll(model, tokenizer, TEXTS, terms, batch_size=2)  # padding inside a batch
    assert whole == text_nll(model, tokenizer, TEXTS, batch_size=2)               # exactly, not approximately
    assert jargon == text_nll(model, tokenizer, TEXTS, terms=terms, batch_size=2)
    assert whole != jargon  # the term tokens are a strict subset: swapped or unmasked outputs would fail


def test_whole_words_only_and_no_tokens_is_an_error(embedded):
    model, tokenizer = embedded
    assert text_nll(model, tokenizer, ["The foxes ran."], terms=["fox"]) == [(0.0, 0)]
    with pytest.raises(ValueError, match="nothing to score"):
        perplexity_from_nll([(0.0, 0)])


# ---- document_nll (chapter 4): per-document scores for intervals ------------------------------------
DOCUMENTS = ["Once upon a time, a fox lived by the river.", "The capital of Kesh is Fennick.",
         "A short one.", "Mira Dale works as a baker in Grove Hill. She bakes bread every day."]


def test_document_nll_adds_up_to_the_perplexity(embedded):
    model, tokenizer = embedded
    nll, tokens = document_nll(model, tokenizer, DOCUMENTS, batch_size=3)  # batches of unequal length
    assert len(nll) == len(tokens) == len(DOCUMENTS)
    assert tokens == [len(tokenizer(t)["input_ids"]) - 1 for t in DOCUMENTS]  # padding is not scored
    assert math.exp(sum(nll) / sum(tokens)) == pytest.approx(
        perplexity(model, tokenizer, DOCUMENTS), rel=1e-5
    )
    alone, _ = document_nll(model, tokenizer, DOCUMENTS[2:3])
    assert alone[0] == pytest.approx(nll[2], rel=1e-4)  # a document's score does not depend on its batch


# ---- one kernel, three views --------------------------------------------------------------------
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
