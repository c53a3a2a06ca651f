"""labkit.evaluate.perplexity scores only the text: also behind a soft prompt; nothing to score is an error."""
import math

import pytest
import torch
from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model

from labkit.data import load_rows
from labkit.evaluate import perplexity, text_logits
from labkit.model import load_model


@pytest.fixture(scope="module")
def base_and_tokenizer():
    return load_model()


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
def test_soft_prompt_perplexity_scores_the_text_after_the_virtual_tokens(base_and_tokenizer, config):
    """The issue's case: a fresh 4-token soft prompt on the first 4 general-validation texts.
    Reference without peft in the loop: feed the soft prompt's embeddings, then the text's, and
    drop the 4 soft-prompt positions before pairing logits with the text's next tokens."""
    base, tokenizer = base_and_tokenizer
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
    # A fresh soft prompt moves the score little (about 4e-4 relative here), but 100x more than
    # the tolerance, so scoring without the soft prompt would fail; misaligned logits fail by far.
    assert abs(expected - plain) > 1e-4 * plain
    assert perplexity(model, tokenizer, texts, batch_size=3) == pytest.approx(expected, rel=1e-6)


@torch.no_grad()
def test_prefix_tuning_perplexity_matches_the_base_attending_to_the_prefix(base_and_tokenizer):
    base, tokenizer = base_and_tokenizer
    torch.manual_seed(0)
    model = get_peft_model(load_model()[0], PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).eval()
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
def test_plain_model_perplexity_is_unchanged_by_batching_and_padding(base_and_tokenizer):
    base, tokenizer = base_and_tokenizer
    texts = _texts(5)
    expected = _reference_ppl(tokenizer, texts, lambda ids: base(ids).logits)
    assert perplexity(base, tokenizer, texts, batch_size=2) == pytest.approx(expected, rel=1e-5)


def test_text_logits_drops_exactly_the_virtual_positions(base_and_tokenizer):
    _, tokenizer = base_and_tokenizer
    model = get_peft_model(load_model()[0], PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    batch = tokenizer(["the cat sat", "a dog"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1] + 3
        assert text_logits(model, batch).shape[:2] == batch["input_ids"].shape


@pytest.mark.parametrize("texts, message", [
    ([], "no texts to score"),
    (["7"], "nothing to score: none of the 1 text"),
])
def test_nothing_to_score_is_a_clear_error(base_and_tokenizer, texts, message):
    base, tokenizer = base_and_tokenizer
    assert texts == [] or len(tokenizer(texts[0])["input_ids"]) == 1
    with pytest.raises(ValueError, match=message):
        perplexity(base, tokenizer, texts)


def test_a_one_token_text_among_others_is_skipped_not_fatal(base_and_tokenizer):
    base, tokenizer = base_and_tokenizer
    texts = _texts(2)
    assert perplexity(base, tokenizer, ["7"] + texts) == pytest.approx(perplexity(base, tokenizer, texts), rel=1e-6)


@torch.no_grad()
def test_every_scorer_that_pairs_logits_with_labels_skips_the_virtual_tokens(base_and_tokenizer):
    """text_nll, document_nll and the KL along sampled replies pair logits with tokens too: on a
    prompt-tuned model each must agree with `perplexity` (checked against a reference above),
    not fail on the 4 extra positions."""
    from labkit.evaluate import _token_kl, document_nll, text_nll

    _, tokenizer = base_and_tokenizer
    torch.manual_seed(0)
    model = get_peft_model(load_model()[0], PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).eval()
    texts = _texts()
    expected = perplexity(model, tokenizer, texts, batch_size=3)
    # float32 sums per text: agreement to 1e-5 (a misaligned pairing is off by orders of magnitude)
    per_text = text_nll(model, tokenizer, texts, batch_size=3)
    assert math.exp(sum(n for n, _ in per_text) / sum(k for _, k in per_text)) == pytest.approx(expected, rel=1e-5)
    nll, tokens = document_nll(model, tokenizer, texts, batch_size=3)
    assert math.exp(sum(nll) / sum(tokens)) == pytest.approx(expected, rel=1e-5)
    batch = tokenizer(texts[:2], return_tensors="pt", padding=True)
    kl = _token_kl(model, model, batch["input_ids"], batch["attention_mask"], start=3)
    assert kl.shape == (2, batch["input_ids"].shape[1] - 3) and kl.abs().max() < 1e-5
