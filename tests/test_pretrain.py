"""Pretraining reproduces: the schedule depends on the step only, so the same command with the
same thread count gives bit-identical weights."""
import hashlib

import pytest
import torch

from labkit.pretrain import PretrainConfig, lr_factor, pretrain


def test_schedule_is_a_function_of_the_step_only():
    """Linear warm-up over 10% of the steps, then a cosine to min_lr_ratio: each value worked out
    by hand. Nothing but the step and the schedule's fields moves it: not the wall-clock cap, the
    thread count or the seed (a schedule that read the time would make a busy machine's run differ)."""
    cfg = PretrainConfig(steps=100, warmup_fraction=0.1, min_lr_ratio=0.1)
    by_hand = {0: 0.1,     # warm-up: (step + 1) / 10
               4: 0.5,
               9: 1.0,     # end of warm-up
               10: 1.0,    # the cosine starts at the top
               55: 0.55,   # half way down the cosine: 0.1 + 0.9 * 0.5 * (1 + cos(pi / 2))
               100: 0.1,   # the cosine ends at min_lr_ratio
               150: 0.1}   # and stays there past the end
    for step, factor in by_hand.items():
        assert lr_factor(step, cfg) == pytest.approx(factor), step
    curve = [lr_factor(s, cfg) for s in range(101)]
    assert all(a < b for a, b in zip(curve[:9], curve[1:10]))        # rises through the warm-up
    assert all(a >= b for a, b in zip(curve[10:], curve[11:]))  # never rises after it
    others = PretrainConfig(
        steps=100, warmup_fraction=0.1, min_lr_ratio=0.1, max_minutes=0.5, threads=3, seed=7
    )
    assert [lr_factor(s, others) for s in range(101)] == curve


def _sha(folder) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_same_command_gives_bit_identical_weights(tmp_path):
    threads = torch.get_num_threads()
    cfg = PretrainConfig(steps=3, batch_size=2, block_size=32, vocab_size=300, corpus_docs=200,
                         threads=1, snapshot_steps=0)
    logs = [pretrain(tmp_path / f"run{i}", cfg, work_dir=tmp_path / f"work{i}", log=lambda *_: None)
            for i in range(2)]
    assert logs[0]["steps"] == logs[1]["steps"] == 3
    assert _sha(tmp_path / "run0") == _sha(tmp_path / "run1")
    assert logs[0]["loss_history"] == logs[1]["loss_history"]
    # and a different seed gives other weights: the hash is not constant by construction
    other = pretrain(tmp_path / "run2", PretrainConfig(**{**cfg.__dict__, "seed": 1}),
                     work_dir=tmp_path / "work2", log=lambda *_: None)
    assert other["steps"] == 3 and _sha(tmp_path / "run2") != _sha(tmp_path / "run0")
    torch.set_num_threads(threads)
