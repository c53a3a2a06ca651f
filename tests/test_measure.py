"""labkit.measure: time and peak memory of a block, parameter counts, sizes, loss history; the
training-memory estimate's arithmetic (against measurement: test_memory_estimate.py) and a clear
warning when a run won't fit."""
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
import torch

import labkit.measure as measure_module
from labkit.measure import (
    Measurement,
    MemoryWarning,
    artifact_mb,
    check_fits,
    count_params,
    estimate_training_memory_mb,
    loss_history,
    measure,
    record_run,
)
from labkit.results import schema

ROOT = Path(__file__).resolve().parents[1]

RUN_SCHEMA = schema()["properties"]["runs"]["items"]


def test_peak_memory_sees_a_200mb_tensor():
    with measure("alloc", device="cpu") as m:
        x = torch.ones(50_000_000)  # 50M float32 = 200 MB, every page written
    del x
    assert m.memory_kind == "cpu_rss"
    assert m.peak_memory_mb >= 180, m.peak_memory_mb


def test_peak_memory_sees_memory_freed_before_the_block_ends():
    with measure("transient", device="cpu") as m:
        x = torch.ones(50_000_000)
        del x  # gone before the block ends: only the background sampler can see it
        time.sleep(0.1)
    assert m.peak_memory_mb >= 180, m.peak_memory_mb


def test_idle_block_records_little_memory_and_its_time():
    with measure("idle", device="cpu") as m:
        time.sleep(0.2)
    assert m.peak_memory_mb < 20, m.peak_memory_mb
    assert 0.2 <= m.wall_time_s < 1.0


def test_tokens_per_second_and_run_dict():
    with measure("gen", tokens=None, device="cpu") as m:
        time.sleep(0.05)
        m.tokens = 100
    assert m.tokens_per_s == pytest.approx(100 / m.wall_time_s)
    run = m.as_run(method="lora", base_model="tiny", trainable_params=10, total_params=1000,
                   train_examples=4, metrics={"accuracy": 0.5, "perplexity": float("nan")},
                   loss_history=[(1, 2.0), (2, float("nan")), (3, 1.5)], artifact_mb=0.01, steps=3)
    jsonschema.validate(run, RUN_SCHEMA)
    assert run["name"] == "gen" and run["train_tokens"] == 100 and run["steps"] == 3
    assert run["metrics"] == {"accuracy": 0.5, "perplexity": None}  # JSON has no NaN
    assert run["loss_history"] == [[1, 2.0], [3, 1.5]]
    assert run["peak_memory_mb"] == pytest.approx(m.peak_memory_mb, abs=0.01)
    baseline = Measurement("base", wall_time_s=1.0, memory_kind="cpu_rss").as_run(
        name="prompting", method="baseline", base_model="tiny", trainable_params=0,
        total_params=1000, train_examples=0)
    jsonschema.validate(baseline, RUN_SCHEMA)
    assert baseline["name"] == "prompting" and "tokens_per_s" not in baseline


def test_count_params_counts_tied_weights_once(tiny_llama):
    trainable, total = count_params(tiny_llama)
    expected = sum(p.numel() for p in tiny_llama.parameters())
    assert total == trainable == expected
    assert tiny_llama.lm_head.weight is tiny_llama.model.embed_tokens.weight
    for p in tiny_llama.parameters():
        p.requires_grad_(False)
    tiny_llama.model.norm.weight.requires_grad_(True)
    assert count_params(tiny_llama) == (32, expected)


def test_count_params_lora(tiny_llama):
    from peft import LoraConfig, get_peft_model

    _, base_total = count_params(tiny_llama)
    model = get_peft_model(tiny_llama, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"))
    trainable, total = count_params(model)
    lora = 2 * 4 * (32 + 32)  # two 32x32 projections, each adds A (4x32) and B (32x4)
    assert (trainable, total) == (lora, base_total + lora)
    assert (trainable, total) == model.get_nb_trainable_parameters()


def test_count_params_prompt_tuning_counts_the_soft_prompt(tiny_llama):
    from peft import PromptTuningConfig, get_peft_model

    _, base_total = count_params(tiny_llama)
    model = get_peft_model(tiny_llama, PromptTuningConfig(num_virtual_tokens=5, task_type="CAUSAL_LM"))
    assert count_params(model) == (5 * 32, base_total + 5 * 32)


def test_artifact_mb(tmp_path):
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\0" * 2**20)
    (tmp_path / "tokenizer.json").write_bytes(b"\0" * 2**19)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "extra.bin").write_bytes(b"\0" * 2**18)
    assert artifact_mb(tmp_path / "adapter_model.safetensors") == 1.0
    assert artifact_mb(tmp_path, pattern="adapter_model.safetensors") == 1.0
    assert artifact_mb(tmp_path) == 1.75
    with pytest.raises(FileNotFoundError, match="no file matching"):
        artifact_mb(tmp_path, pattern="*.pt")
    with pytest.raises(FileNotFoundError):
        artifact_mb(tmp_path / "missing")


def _token_dataset(n: int = 16, length: int = 12):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 64, (n, length), generator=g)
    return [{"input_ids": row.tolist(), "labels": row.tolist()} for row in ids]


def test_loss_history_from_a_real_trainer(tiny_llama, tmp_path):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4,
                             logging_steps=1, eval_strategy="steps", eval_steps=2, learning_rate=1e-2,
                             use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True)
    data = _token_dataset()
    trainer = Trainer(model=tiny_llama, args=args, train_dataset=data, eval_dataset=data[:4])
    trainer.train()
    losses = loss_history(trainer)
    assert [step for step, _ in losses] == [1, 2, 3, 4]  # no eval_loss or summary entry mixed in
    assert all(loss > 0 for _, loss in losses)
    assert loss_history(trainer.state.log_history) == losses


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(61)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


def test_loss_history_from_a_trl_trainer(tiny_llama, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    texts = [" ".join(f"w{(i * 7 + j) % 61}" for j in range(10)) for i in range(16)]
    args = SFTConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                     logging_steps=1, learning_rate=1e-2, use_cpu=True, bf16=False, report_to=[],
                     save_strategy="no", disable_tqdm=True, max_length=16,
                     activation_checkpointing=False)
    trainer = SFTTrainer(model=tiny_llama, args=args, train_dataset=Dataset.from_dict({"text": texts}),
                         processing_class=_tiny_tokenizer())
    trainer.train()
    assert [step for step, _ in loss_history(trainer)] == [1, 2, 3]


def test_a_second_run_is_not_hidden_by_the_first_runs_freed_pages():
    """Small tensors live on the C heap; once freed, their pages stay in the process unless
    handed back (a live allocation above them stops the heap shrinking by itself). Without
    that, the second identical block reuses those pages and records next to nothing."""
    pins = []

    def small_tensors_block():
        with measure("small tensors") as m:
            chunks = [torch.ones(25_000) for _ in range(2000)]  # 2000 x 100 KB, each touched
            pins.append(torch.ones(25_000))  # outlives the block, above the freed chunks
            del chunks
        return m.peak_memory_mb

    first, second = small_tensors_block(), small_tensors_block()
    assert first >= 150, first
    assert second >= 150, second


def test_nested_blocks_each_get_their_own_peak():
    """The kernel's peak counter is reset when a block starts: an inner block must not see the
    outer block's earlier peak, and the outer block must still see it (and the inner one's)."""
    with measure("outer", device="cpu") as outer:
        x = torch.ones(50_000_000)  # 200 MB, freed before the inner block
        del x
        with measure("inner", device="cpu") as inner:
            y = torch.ones(12_500_000)  # 50 MB
            del y
    assert 40 <= inner.peak_memory_mb < 120, inner.peak_memory_mb
    assert outer.peak_memory_mb >= 180, outer.peak_memory_mb


def test_the_sampling_fallback_still_sees_a_transient_peak(monkeypatch):
    """Where the kernel counter cannot be reset (not Linux), a sampling thread measures. It sees a
    peak that lasts several sampling intervals (10 ms), gone before the block ends."""
    monkeypatch.setattr(measure_module, "_KERNEL_PEAK", False)
    with measure("sampled", device="cpu") as m:
        x = torch.ones(50_000_000)
        time.sleep(0.1)
        del x
        time.sleep(0.1)
    assert m.peak_memory_mb >= 180, m.peak_memory_mb


# ---- resource guards: the training-memory estimate, and a warning when a run won't fit -------
# The estimate against measured peaks: tests/test_memory_estimate.py.
def test_estimate_parts_follow_the_arithmetic(tiny_llama):
    parts = estimate_training_memory_mb(tiny_llama, batch_size=4, seq_len=32, logits="full")
    n = sum(p.numel() for p in tiny_llama.parameters())
    assert parts["weights"] == pytest.approx(n * 4 / 2**20)
    assert parts["gradients"] == pytest.approx(parts["weights"])  # everything trains
    assert parts["optimizer"] == pytest.approx(2 * parts["weights"])  # AdamW: two moments
    assert parts["logits"] == pytest.approx(3 * 4 * 32 * 64 * 4 / 2**20)
    assert parts["baseline"] == measure_module.FRAMEWORK_BASELINE_MB["cpu"]
    double_batch = estimate_training_memory_mb(tiny_llama, batch_size=8, seq_len=32, logits="full")
    assert double_batch["activations"] == pytest.approx(2 * parts["activations"])
    vocab, h = tiny_llama.config.vocab_size, tiny_llama.config.hidden_size
    assert parts["lm_head_gradient"] == 0  # only TRL's chunked loss allocates the head's fp32 gradient
    chunked = estimate_training_memory_mb(tiny_llama, batch_size=4, seq_len=32)
    assert chunked["lm_head_gradient"] == pytest.approx(vocab * h * 4 / 2**20)
    forward = parts["activations"] + parts["logits"] + parts["lm_head_gradient"]
    backward = parts["gradients"] + parts["lm_head_gradient"] * tiny_llama.config.tie_word_embeddings
    fixed = parts["weights"] + parts["optimizer"] + parts["baseline"]
    assert parts["total"] == pytest.approx(fixed + max(forward, backward))  # freed as the gradients fill
    accumulated = estimate_training_memory_mb(tiny_llama, batch_size=4, seq_len=32, logits="full",
                                              gradient_accumulation_steps=2)
    assert accumulated["total"] == pytest.approx(fixed + forward + backward)  # gradients alive in the forward
    lora = estimate_training_memory_mb(tiny_llama, batch_size=4, seq_len=32, method="lora", lora_r=2)
    assert 0 < lora["gradients"] < parts["gradients"]
    assert lora["activations"] < parts["activations"]  # frozen projections keep fewer inputs
    assert lora["lm_head_gradient"] == 0  # the head is frozen
    for p in tiny_llama.parameters():
        p.requires_grad_(False)  # nothing trains: no gradients, optimizer state or activations
    frozen = estimate_training_memory_mb(tiny_llama, batch_size=4, seq_len=32)
    assert frozen["gradients"] == frozen["optimizer"] == frozen["activations"] == 0


def test_a_run_that_does_not_fit_warns_with_what_to_change(monkeypatch):
    monkeypatch.setattr(measure_module, "available_memory_mb", lambda device=None: 1000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_fits({"total": 900.0}, device="cpu") is True
    with pytest.warns(MemoryWarning, match=r"needs about 4,000 MB but only 1,000 MB are free on cpu.*"
                                           r"per_device_train_batch_size=8.*LABKIT_PROFILE=cpu"):
        assert check_fits(4000.0, device="cpu", batch_size=16) is False


def test_available_memory_is_positive():
    assert measure_module.available_memory_mb("cpu") > 0


# ---- one way to record a run --------------------------------------------------------------------
# ---- measure: one way to record a run -----------------------------------------------------------
def test_record_run_reads_the_trainer_and_counts_only_what_trained(tiny_llama):
    trainer = SimpleNamespace(state=SimpleNamespace(
        global_step=3, num_input_tokens_seen=120,
        log_history=[{"step": 1, "loss": 2.5}, {"step": 3, "loss": 1.5}, {"step": 3, "eval_loss": 9.0}]))
    with measure("demo", device="cpu") as m:
        pass
    run = record_run(m, tiny_llama, trainer, method="full_ft", train_examples=6, metrics={"accuracy": 0.5},
                     info={"base_model": "tiny"})
    total = sum(p.numel() for p in tiny_llama.parameters())
    assert run["trainable_params"] == run["total_params"] == total
    assert run["steps"] == 3 and run["train_tokens"] == 120 and run["loss_history"] == [[1, 2.5], [3, 1.5]]
    assert run["base_model"] == "tiny" and run["metrics"] == {"accuracy": 0.5}
    evaluation = record_run(m, tiny_llama, method="prompting", train_examples=0, info={"base_model": "tiny"})
    assert (
        evaluation["trainable_params"] == 0 and "steps" not in evaluation and "loss_history" not in evaluation
    )


def test_comparable_estimate_follows_what_measure_counts():
    """CPU RSS is counted above the loaded weights, CUDA from zero: a swapped rule fails here."""
    from labkit.measure import comparable_estimate_mb

    est = {"weights": 100.0, "gradients": 100.0, "optimizer": 200.0, "total": 400.0}
    assert comparable_estimate_mb(est, "cpu_rss") == 300.0
    assert comparable_estimate_mb(est, "cuda_max_allocated") == 400.0
    with pytest.raises(ValueError):
        comparable_estimate_mb(est, "none")
