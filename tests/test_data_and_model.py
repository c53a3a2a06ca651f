"""Data reading, the tokenizer, and model loading (embedded, local, Hub id offline)."""
import os
import subprocess
import sys
import time

import pytest

from labkit.data import DataError, read_jsonl
from labkit.model import EMBEDDED_MODEL, ModelNotAvailable, load_model, resolve_model_path
from labkit.paths import MODELS_DIR
from labkit.tokenizer import IM_END, train_tokenizer


def test_malformed_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n\n{"text": "broken"\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: not valid JSON"):
        read_jsonl(path)


def test_missing_field_names_file_line_and_field(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n')
    with pytest.raises(DataError, match=r"rows\.jsonl:2: missing field\(s\) completion"):
        read_jsonl(path, required=("prompt", "completion"))
    assert len(read_jsonl(path, required=("prompt",))) == 2


def test_missing_file_says_how_to_regenerate(tmp_path):
    with pytest.raises(DataError, match="python -m labkit data"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_tokenizer_splits_digits_and_marks_assistant_tokens():
    texts = ["Question: What is 358 + 467?\nAnswer: The answer is 825."] * 50 + ["the cat sat"] * 50
    tok = train_tokenizer(texts, vocab_size=300)
    pieces = tok.tokenize(" 358")
    assert [p for p in pieces if p.strip("Ġ")] == ["3", "5", "8"]
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "the cat"}]
    enc = tok.apply_chat_template(chat, return_assistant_tokens_mask=True, return_dict=True)
    masked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tok.decode(masked) == "the cat" + IM_END
    assert tok.pad_token_id != tok.eos_token_id


def test_hub_id_with_hf_hub_offline_fails_fast_naming_embedded_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelNotAvailable, match=EMBEDDED_MODEL):
        load_model("HuggingFaceTB/SmolLM2-135M")
    assert time.monotonic() - start < 5


def test_hub_id_with_unreachable_hub_fails_within_seconds():
    """A machine without network: the Hub endpoint refuses connections."""
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"}
    code = ("from labkit.model import load_model\n"
            "load_model('HuggingFaceTB/SmolLM2-135M')\n")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    last_line = proc.stderr.strip().splitlines()[-1]
    assert "not reachable" in last_line and EMBEDDED_MODEL in last_line
    assert elapsed < 20, elapsed


def test_local_directory_resolves_to_itself(tmp_path):
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)


@pytest.mark.skipif(not (MODELS_DIR / EMBEDDED_MODEL).is_dir(), reason="embedded model not built yet")
def test_embedded_model_loads_and_is_small():
    model, tokenizer = load_model()
    n_params = sum(p.numel() for p in model.parameters())
    assert 2_000_000 <= n_params <= 10_000_000
    weights = MODELS_DIR / EMBEDDED_MODEL / "model.safetensors"
    assert weights.stat().st_size < 30 * 2**20
    assert tokenizer.chat_template and "generation" in tokenizer.chat_template
