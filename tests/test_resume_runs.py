"""labkit.training.resume_checkpoint never mixes runs: a re-run cell whose learning rate,
accumulation, seed, model or data changed trains from scratch with a warning (issue 29)."""
from __future__ import annotations

import warnings

import pytest


def _setup():
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM

    generator = torch.Generator().manual_seed(1234)
    ids = torch.randint(2, 64, (24, 16), generator=generator)
    data = Dataset.from_list([{"input_ids": r.tolist(), "labels": r.tolist()} for r in ids])
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    return data, config


def _args(out, **changes):
    from transformers import TrainingArguments

    values = dict(output_dir=str(out), max_steps=8, per_device_train_batch_size=4, learning_rate=1e-2,
                  save_steps=4, save_total_limit=1, logging_steps=1, seed=0, use_cpu=True, report_to=[],
                  disable_tqdm=True, dataloader_num_workers=0)
    values.update(changes)
    return TrainingArguments(**values)


def _run(args, data, config, stop_at=None):
    """Train as a chapter's cell does; `stop_at` ends training after that step, leaving an
    unfinished run's checkpoint behind (like a kernel restart). Returns (resumed from, losses)."""
    import torch
    from transformers import LlamaForCausalLM, Trainer, TrainerCallback

    from labkit.training import resume_checkpoint

    torch.manual_seed(0)
    model = LlamaForCausalLM(config)

    class StopAt(TrainerCallback):
        def on_step_end(self, a, state, control, **kwargs):
            if state.global_step == stop_at:
                control.should_training_stop = True

    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[StopAt()])
    resumed = resume_checkpoint(args.output_dir, args, data=data)
    trainer.train(resume_from_checkpoint=resumed)
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return resumed, losses


def test_a_changed_learning_rate_trains_from_scratch_with_a_warning(tmp_path):
    import torch

    torch.set_num_threads(1)
    data, config = _setup()
    out = tmp_path / "run"
    resumed, _ = _run(_args(out), data, config, stop_at=4)  # interrupted after the checkpoint at 4
    assert resumed is None and (out / "checkpoint-4").is_dir()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same run resumes, silently
        from labkit.training import resume_checkpoint
        assert resume_checkpoint(out, _args(out), data=data) == str(out / "checkpoint-4")

    with pytest.warns(UserWarning, match=r"another run \(learning_rate 0.01 there, 0.05 now\)"):
        resumed, losses = _run(_args(out, learning_rate=5e-2), data, config)
    assert resumed is None
    assert losses[0][0] == 1, "trained from step 1, not from the old run's step 4"
    _, fresh = _run(_args(tmp_path / "fresh", learning_rate=5e-2), data, config)
    assert losses == fresh  # exactly a run from scratch at the new rate


@pytest.mark.parametrize("change", [dict(gradient_accumulation_steps=2), dict(seed=1),
                                    dict(lr_scheduler_type="constant"), dict(warmup_steps=3)],
                         ids=lambda c: next(iter(c)))
def test_any_argument_that_changes_the_run_is_compared(tmp_path, change):
    from labkit.training import resume_checkpoint

    out = tmp_path / "run"
    assert resume_checkpoint(out, _args(out)) is None  # records the run
    (out / "checkpoint-4").mkdir()
    (out / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "max_steps": 8, "train_batch_size": 4}')
    assert resume_checkpoint(out, _args(out, logging_steps=2, save_steps=2)) == str(out / "checkpoint-4")
    name = next(iter(change))
    with pytest.warns(UserWarning, match=f"another run \\({name} "):
        assert resume_checkpoint(out, _args(out, **change)) is None
    assert not (out / "checkpoint-4").exists()  # a later interruption cannot resume it either
    assert resume_checkpoint(out, _args(out)) is None


def test_another_model_or_data_is_another_run(tmp_path):
    from datasets import Dataset

    from labkit.training import resume_checkpoint

    out = tmp_path / "run"
    data = Dataset.from_list([{"text": "a"}, {"text": "b"}])
    assert resume_checkpoint(out, _args(out), model="labworld-base", data=data) is None
    (out / "checkpoint-4").mkdir()
    (out / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "max_steps": 8}')
    assert resume_checkpoint(out, _args(out), model="labworld-base", data=data) == str(out / "checkpoint-4")
    with pytest.warns(UserWarning, match=r"another run \(model 'labworld-base' there, 'other' now\)"):
        assert resume_checkpoint(out, _args(out), model="other", data=data) is None
    assert resume_checkpoint(out, _args(out), model="other", data=data) is None
    (out / "checkpoint-4").mkdir()
    (out / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "max_steps": 8}')
    with pytest.warns(UserWarning, match=r"another run \(data "):
        assert resume_checkpoint(out, _args(out), model="other",
                                 data=Dataset.from_list([{"text": "a"}, {"text": "c"}])) is None
