"""labkit.measure: time and peak memory of a block, parameter counts, sizes, loss history."""
import time

import jsonschema
import pytest
import torch

from labkit.measure import Measurement, loss_history, artifact_mb, count_params, measure
from labkit.results import schema

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
    import labkit.measure as measure_module

    monkeypatch.setattr(measure_module, "_KERNEL_PEAK", False)
    with measure("sampled", device="cpu") as m:
        x = torch.ones(50_000_000)
        time.sleep(0.1)
        del x
        time.sleep(0.1)
    assert m.peak_memory_mb >= 180, m.peak_memory_mb
