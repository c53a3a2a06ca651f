"""A tiny random model that is *not* the embedded one, for "any model" tests (issue 15).

Everything about it differs from labworld-base in the ways real small open models do:
Qwen2 architecture with grouped-query attention (2 key/value heads for 4 query heads), untied
embeddings, its own byte-level BPE tokenizer (digits not split), NO pad token, no BOS, and a
ChatML chat template with a default system prompt and without `{% generation %}` markers.

    python tests/other_model.py /tmp/qwen2-tiny     # build it by hand, then
    LABKIT_MODEL=/tmp/qwen2-tiny LABKIT_PROFILE=smoke pytest --nbmake notebooks/
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

CHATML_TEMPLATE = (  # like Qwen2/SmolLM2: default system prompt, no generation markers
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a tiny test model.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def training_texts(limit: int = 3000) -> list[str]:
    """LabWorld text (the general corpus and chat turns) so that its BPE merges are meaningful."""
    from labkit.data import load_rows

    texts = [r["text"] for r in load_rows("general", "train")[:limit]]
    texts += [m["content"] for r in load_rows("instructions", "train")[:500] for m in r["messages"]]
    return texts


def build_other_model(folder: str | Path, vocab_size: int = 700, seed: int = 0) -> Path:
    """Write the tiny Qwen2 model and its tokenizer to `folder` (safetensors); return the folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_texts(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                        additional_special_tokens=SPECIALS[:2], model_max_length=1024)
    tokenizer.chat_template = CHATML_TEMPLATE
    assert tokenizer.pad_token is None and tokenizer.bos_token is None

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=None,
        pad_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = None
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # AutoTokenizer picks Qwen2Tokenizer for a qwen2 config, whose defaults would add
    # pad = unk = <|endoftext|>; an explicit null keeps "no pad token" (as in some Hub folders).
    config_file = folder / "tokenizer_config.json"
    tok_config = json.loads(config_file.read_text())
    tok_config.update(pad_token=None, unk_token=None, bos_token=None)
    config_file.write_text(json.dumps(tok_config, indent=2))
    return folder


if __name__ == "__main__":
    print(build_other_model(sys.argv[1] if len(sys.argv) > 1 else "/tmp/qwen2-tiny"))
