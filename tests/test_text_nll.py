"""labkit.evaluate.text_nll (chapter 7): per-text and per-term next-token losses."""
import math

import pytest
import torch

from labkit.evaluate import perplexity, perplexity_from_nll, text_nll
from labkit.model import load_model

TEXTS = ["Started on zanthrel 200 mg twice daily.", "Patient Nora Frost presented with edema.",
         "The fox ran home."]


@pytest.fixture(scope="module")
def embedded():
    return load_model()


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


def test_whole_words_only_and_no_tokens_is_an_error(embedded):
    model, tokenizer = embedded
    assert text_nll(model, tokenizer, ["The foxes ran."], terms=["fox"]) == [(0.0, 0)]
    with pytest.raises(ValueError, match="no scored tokens"):
        perplexity_from_nll([(0.0, 0)])
