"""Pretraining reproduces: the schedule depends on the step only, so the same command with the
same thread count gives bit-identical weights."""
import hashlib

import pytest
import torch

from labkit.pretrain import PretrainConfig, lr_factor, pretrain


def test_schedule_is_a_function_of_the_step_only():
    cfg = PretrainConfig(steps=100, warmup_fraction=0.1, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)       # warm-up starts at 1/10
    assert lr_factor(9, cfg) == pytest.approx(1.0)       # end of warm-up
    assert lr_factor(100, cfg) == pytest.approx(0.1)     # cosine ends at min_lr_ratio
    mid = lr_factor(55, cfg)
    assert 0.5 < mid < 0.6                                # half way down the cosine
    assert [lr_factor(s, cfg) for s in range(100)] == [lr_factor(s, cfg) for s in range(100)]


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
