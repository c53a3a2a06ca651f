"""Data reading (bad input gets a clear error naming file, line and field; files saved by other
editors load), the tokenizer, and model loading (embedded, local, Hub id offline)."""
import os
import subprocess
import sys
import time

import pytest

from labkit.data import DataError, balanced, load_hf_dataset, read_jsonl
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


def test_utf8_byte_order_mark_is_read_like_datasets(tmp_path):
    """Windows editors save UTF-8 with a BOM; `datasets` reads such files, so must we."""
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "caf\xc3\xa9"}\r\n{"text": "b"}\r\n')
    assert read_jsonl(path, required=("text",)) == [{"text": "café"}, {"text": "b"}]
    from datasets import load_dataset as hf_load

    hf_rows = hf_load("json", data_files=str(path), split="train").to_list()
    assert hf_rows == read_jsonl(path)


def test_a_bom_in_the_middle_of_the_file_is_still_an_error(tmp_path):
    path = tmp_path / "mid.jsonl"
    path.write_bytes(b'{"text": "a"}\n\xef\xbb\xbf{"text": "b"}\n')
    with pytest.raises(DataError, match=r"mid\.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_bytes_that_are_not_utf8_name_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: not UTF-8 text.*save the file as UTF-8"):
        read_jsonl(path)


def test_wrong_type_names_file_line_and_field(tmp_path):
    path = tmp_path / "add.jsonl"
    path.write_text('{"a": 1, "b": 2, "sum": 3}\n{"a": 4, "b": "5", "sum": 9}\n')
    with pytest.raises(DataError, match=r"add\.jsonl:2: field 'b' should be int, got string \"5\""):
        read_jsonl(path, required={"a": int, "b": int, "sum": int})


def test_bool_is_not_an_int_and_int_is_a_float(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"x": 1.5}\n{"x": 2}\n')
    assert len(read_jsonl(path, required={"x": float})) == 2
    path.write_text('{"x": true}\n')
    with pytest.raises(DataError, match=r"t\.jsonl:1: field 'x' should be int, got boolean"):
        read_jsonl(path, required={"x": int})


def test_a_field_that_changes_type_names_both_lines(tmp_path):
    """Arrow (and so `datasets`) can't hold a column that is text on one line and a number on
    another; without this check the error comes from deep inside pyarrow."""
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"text": "a"}\n{"text": null}\n{"text": "b"}\n{"text": 7}\n')
    with pytest.raises(
        DataError, match=r"mixed\.jsonl:4: field 'text' is a number here but a string at line 1"
    ):
        read_jsonl(path)


def test_every_labworld_file_passes_the_checks():
    from labkit.data import LABWORLD_DIR

    files = sorted(LABWORLD_DIR.glob("*/*.jsonl"))
    assert files, f"no LabWorld data under {LABWORLD_DIR}"
    for path in files:
        if path.stat().st_size < 5_000_000:  # the big general corpus is read by the chapters
            assert read_jsonl(path), path


def test_load_dataset_passes_typed_requirements(monkeypatch, tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "train.jsonl").write_text('{"prompt": "p", "completion": 3}\n')
    monkeypatch.setattr("labkit.data.LABWORLD_DIR", tmp_path)
    with pytest.raises(DataError, match=r"train\.jsonl:1: field 'completion' should be str"):
        load_hf_dataset("toy", required={"prompt": str, "completion": str})
    assert load_hf_dataset("toy", required=("prompt",)).num_rows == 1



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


# ---- one balanced subset ------------------------------------------------------------------------
# ---- data: one balanced subset -------------------------------------------------------------------
def test_balanced_takes_the_same_number_from_every_group_in_order():
    rows = [{"task": t, "i": i} for i, t in enumerate("aaaabbbbcc")]
    picked = balanced(rows, 6, "task")
    assert [r["i"] for r in picked] == [0, 1, 4, 5, 8, 9]
    assert [r["task"] for r in balanced(rows, 6, "task", groups=["c", "a"])] == ["c", "c", "a", "a", "a"]
    assert len(balanced(rows, 1, "task")) == 3  # at least one from every group
