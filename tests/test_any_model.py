"""Any small open model (issue 15): the lab follows the loaded model, not the embedded one.

Items 1-5 of the issue, each with the right value: (1) no pad token → pad = eos, with results
identical to the embedded model's; (2) results name the loaded model and hash its weights;
(3) parameter counts under grouped-query attention come from num_key_value_heads; (4) broken
folders fail with a message naming what is missing, pickles are refused; (5) evaluations that
only make sense for the embedded model say so.
"""
import hashlib
import json
import shutil

import pytest
import torch

from labkit.generation import generate
from labkit.likelihood import perplexity
from labkit.model import (
    EMBEDDED_MODEL,
    ModelNotAvailable,
    embedded_only,
    load_model,
    load_tokenizer,
    model_info,
    resolve_model_path,
)
from labkit.paths import MODELS_DIR
from labkit.scoring import completion_scores

needs_embedded = pytest.mark.skipif(
    not (MODELS_DIR / EMBEDDED_MODEL).is_dir(), reason="embedded model not built"
)

TEXTS = ["Once upon a time,", "The cat sat on the mat and looked at the small red door.", "Hello"]


@pytest.fixture
def embedded_without_pad(tmp_path):
    """A copy of the embedded model whose tokenizer and config have no pad token."""
    folder = tmp_path / "labworld-base-nopad"
    shutil.copytree(resolve_model_path(EMBEDDED_MODEL), folder)
    for name, keys in (("tokenizer_config.json", ["pad_token"]), ("config.json", ["pad_token_id"]),
                       ("generation_config.json", ["pad_token_id"])):
        data = json.loads((folder / name).read_text())
        for key in keys:
            data.pop(key, None)
        (folder / name).write_text(json.dumps(data))
    return folder


# ---- 1. no pad token ----------------------------------------------------------------------
@needs_embedded
def test_without_pad_token_pad_is_eos_and_results_are_unchanged(embedded_without_pad, capsys):
    model, tok = load_model()
    bare, bare_tok = load_model(str(embedded_without_pad))
    assert tok.pad_token != tok.eos_token  # the embedded model has its own pad token...
    assert bare_tok.pad_token == bare_tok.eos_token == tok.eos_token  # ...the copy gets eos
    assert bare.config.pad_token_id == bare_tok.eos_token_id
    load_tokenizer(str(embedded_without_pad))
    assert capsys.readouterr().out.count("has no pad token") == 1  # said once

    assert generate(bare, bare_tok, ["Once upon a time,"], 8) == generate(
        model, tok, ["Once upon a time,"], 8
    )
    # a batch of unequal lengths is padded (left for generation, right for perplexity)
    assert generate(bare, bare_tok, TEXTS, 8) == generate(model, tok, TEXTS, 8)
    assert perplexity(bare, bare_tok, TEXTS) == pytest.approx(perplexity(model, tok, TEXTS), rel=1e-6)
    rows = [{"prompt": t, "answer": "x"} for t in TEXTS]
    assert completion_scores(bare, bare_tok, rows) == completion_scores(model, tok, rows)


def test_other_model_without_pad_token_generates_and_scores(other_model_dir):
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(other_model_dir).pad_token is None
    model, tok = load_model(str(other_model_dir))
    assert tok.pad_token == tok.eos_token == "<|im_end|>" and tok.bos_token is None
    outs = generate(model, tok, TEXTS, 4)
    assert len(outs) == 3 and all(isinstance(o, str) for o in outs)
    ppl = perplexity(model, tok, TEXTS)
    assert 1 < ppl < 10 * len(tok)  # random weights: about the vocabulary size, finite


def test_pad_eos_keeps_eos_in_trls_labels_but_not_in_transformers_collator(other_model_dir):
    """The catch with pad = eos: transformers' LM collator hides every pad id from the loss, eos
    included; TRL's SFT collator pads labels separately and keeps the eos the model must learn."""
    from transformers import DataCollatorForLanguageModeling as HFCollator
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TRLCollator

    tok = load_tokenizer(str(other_model_dir))
    examples = [{"input_ids": tok("a b c")["input_ids"] + [tok.eos_token_id]},
                {"input_ids": tok("a")["input_ids"] + [tok.eos_token_id]}]
    hf = HFCollator(tok, mlm=False)(examples)
    trl = TRLCollator(pad_token_id=tok.pad_token_id)(examples)
    eos_labels = lambda batch: int((batch["labels"] == tok.eos_token_id).sum())  # noqa: E731
    assert eos_labels(trl) == 2 and eos_labels(hf) == 0


# ---- 2. results follow the loaded model ---------------------------------------------------
def test_model_info_names_the_loaded_model_and_hashes_its_weights(other_model_dir):
    model, _ = load_model(str(other_model_dir))
    expected = hashlib.sha256((other_model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert model_info(model) == {"base_model": "qwen2-gqa-tiny", "base_model_sha256": expected}


# ---- 3. grouped-query attention -----------------------------------------------------------
def test_parameter_counts_under_grouped_query_attention_come_from_num_key_value_heads(other_model_dir):
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model

    model, _ = load_model(str(other_model_dir))
    c = model.config
    h, layers, r, kv = c.hidden_size, c.num_hidden_layers, 4, c.num_key_value_heads * c.head_dim
    assert kv < h  # grouped-query attention: k and v are narrower than q
    lora = get_peft_model(model, LoraConfig(r=r, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    n_lora = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    # q: h -> heads*head_dim, k and v: h -> kv_heads*head_dim, o: heads*head_dim -> h
    q = c.num_attention_heads * c.head_dim
    assert n_lora == layers * r * ((h + q) + 2 * (h + kv) + (q + h))
    assert n_lora != layers * 4 * r * 2 * h  # the count that assumes multi-head attention

    model, _ = load_model(str(other_model_dir))
    prefix = get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    n_prefix = sum(p.numel() for p in prefix.parameters() if p.requires_grad)
    assert n_prefix == 3 * layers * 2 * kv != 3 * layers * 2 * h


# ---- 4. broken model folders --------------------------------------------------------------
def _copy_without(src, dst, *names):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*names))
    return str(dst)


def test_folder_without_tokenizer_files_names_what_is_missing(other_model_dir, tmp_path):
    folder = _copy_without(other_model_dir, tmp_path / "m", "tokenizer.json")
    for load in (load_model, load_tokenizer):
        with pytest.raises(ModelNotAvailable, match=r"no tokenizer files .*tokenizer\.json"):
            load(folder)


def test_pickle_only_folder_is_refused_with_safetensors_advice(other_model_dir, tmp_path):
    from safetensors.torch import load_file

    folder = _copy_without(other_model_dir, tmp_path / "m", "model.safetensors")
    torch.save(load_file(other_model_dir / "model.safetensors"), f"{folder}/pytorch_model.bin")
    with pytest.raises(
        ModelNotAvailable, match=r"only pickle checkpoints \(pytorch_model\.bin\).*safetensors only"
    ):
        load_model(folder)


def test_folder_without_config_or_weights_names_what_is_missing(other_model_dir, tmp_path):
    with pytest.raises(ModelNotAvailable, match="config.json is missing"):
        load_model(_copy_without(other_model_dir, tmp_path / "a", "config.json"))
    with pytest.raises(ModelNotAvailable, match=r"no weights: no \*\.safetensors"):
        load_model(_copy_without(other_model_dir, tmp_path / "b", "*.safetensors"))


def test_tokenizer_without_pad_or_eos_is_refused(other_model_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(other_model_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["eos_token"] = None
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelNotAvailable, match="neither a pad nor an eos token"):
        load_tokenizer(str(folder))


# ---- 5. evaluations that only make sense for the embedded model ---------------------------
def test_embedded_only_evaluations_say_so_for_another_model(other_model_dir, capsys):
    model, _ = load_model(str(other_model_dir))
    assert embedded_only(model, "The model-card comparison") is False
    out = capsys.readouterr().out
    assert "The model-card comparison is skipped" in out and "qwen2-gqa-tiny" in out and EMBEDDED_MODEL in out


@needs_embedded
def test_embedded_only_runs_for_the_embedded_model(capsys):
    model, _ = load_model()
    assert embedded_only(model, "The model-card comparison") is True
    assert capsys.readouterr().out == ""
