"""Shared test helpers: headless matplotlib, and the tests' models.

- `tiny_llama` / `make_tiny_llama`: the one tiny model, a Llama built from a config (no download).
  `make_tiny_llama(**changes)` changes config fields where a test needs another shape (more
  layers, grouped-query attention); `build_tiny_llama` is the same for code outside a test
  (`tests/_tiny_training.py` runs in a subprocess).
- `embedded`: the lab's embedded model and its tokenizer (`load_model()`), loaded once per session.
- `other_model_dir`: a saved tiny Qwen2 that differs from the embedded model in the ways real
  small open models do (tests/other_model.py): the "any model" tests need a folder to load.
"""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

TINY_LLAMA = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                  tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=None)


def build_tiny_llama(seed: int = 0, **changes):
    """A Llama with 1 layer, 32-wide hidden states, 2 attention heads, a 64-token vocabulary and
    tied embeddings, initialised from `seed`; `changes` replace fields of its config (a new
    `hidden_size` brings `intermediate_size` = 2 x hidden along unless given)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = {**TINY_LLAMA, **changes}
    if "hidden_size" in changes and "intermediate_size" not in changes:
        config["intermediate_size"] = 2 * changes["hidden_size"]
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**config))


@pytest.fixture
def make_tiny_llama():
    """`make_tiny_llama(seed=0, **config_changes)`: a fresh tiny Llama per call (see build_tiny_llama)."""
    return build_tiny_llama


@pytest.fixture
def tiny_llama():
    """A fresh tiny Llama (1 layer, hidden 32, vocabulary 64, tied embeddings); tests may change it."""
    return build_tiny_llama()


@pytest.fixture(scope="session")
def embedded():
    """(model, tokenizer) of the embedded model, shared by every test of the session: read it,
    never change it. A test that trains, wraps (peft) or perturbs a model loads its own copy
    with `load_model()`; the weights are checked unchanged when the session ends."""
    from labkit.measure import fingerprint
    from labkit.model import load_model

    model, tokenizer = load_model()
    before = fingerprint(model)
    yield model, tokenizer
    assert fingerprint(model) == before, "a test changed the shared embedded model: load your own copy"


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory):
    """A saved tiny Qwen2 model with grouped-query attention and no pad token (tests/other_model.py)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from other_model import build_other_model

    return build_other_model(tmp_path_factory.mktemp("models") / "qwen2-gqa-tiny")
