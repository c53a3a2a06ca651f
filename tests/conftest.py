"""Shared test helpers: headless matplotlib, a tiny Llama built from a config (no download)."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture
def tiny_llama():
    """A 1-layer Llama with 32-wide hidden states and a 64-token vocabulary, tied embeddings."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory):
    """A saved tiny Qwen2 model with grouped-query attention and no pad token (tests/other_model.py)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from other_model import build_other_model

    return build_other_model(tmp_path_factory.mktemp("models") / "qwen2-gqa-tiny")
