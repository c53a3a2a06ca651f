"""labkit.profiles: the three profiles, choosing one, and the one-line error for a bad name."""
import dataclasses
import os
import subprocess
import sys

import pytest
import torch

from labkit.profiles import PROFILES, Profile, get_profile

SIZE_FIELDS = ("train_steps", "batch_size", "eval_examples")


def test_three_frozen_profiles():
    assert list(PROFILES) == ["smoke", "cpu", "gpu"]
    for name, profile in PROFILES.items():
        assert isinstance(profile, Profile) and profile.name == name
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["cpu"].train_steps = 1


def test_smoke_is_smallest_and_gpu_largest():
    smoke, cpu, gpu = PROFILES["smoke"], PROFILES["cpu"], PROFILES["gpu"]
    for field in SIZE_FIELDS:
        assert getattr(smoke, field) < getattr(cpu, field) <= getattr(gpu, field), field
    assert smoke.pretrain_demo_steps < cpu.pretrain_demo_steps


def test_choose_by_argument_or_environment(monkeypatch):
    monkeypatch.setenv("LABKIT_PROFILE", "smoke")
    assert get_profile().name == "smoke"
    assert get_profile("gpu").name == "gpu"  # an argument wins over the environment
    monkeypatch.setenv("LABKIT_PROFILE", " CPU ")
    assert get_profile() is PROFILES["cpu"]


@pytest.mark.parametrize("cuda, expected", [(True, "gpu"), (False, "cpu")])
def test_automatic_choice_follows_cuda(monkeypatch, cuda, expected):
    monkeypatch.delenv("LABKIT_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert get_profile().name == expected


def test_unknown_profile_is_one_line_naming_the_choices(monkeypatch):
    monkeypatch.setenv("LABKIT_PROFILE", "bogus")
    with pytest.raises(ValueError) as err:
        get_profile()
    message = str(err.value)
    assert message == "Unknown LABKIT_PROFILE 'bogus': choose one of smoke, cpu, gpu"
    assert "\n" not in message


def test_unknown_profile_from_a_fresh_process():
    env = {**os.environ, "LABKIT_PROFILE": "bogus"}
    proc = subprocess.run([sys.executable, "-c", "import labkit.profiles as p; p.get_profile()"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "ValueError: Unknown LABKIT_PROFILE 'bogus': choose one of smoke, cpu, gpu"


def test_every_profile_field_is_read_somewhere():
    """A field that no notebook or labkit module reads is a dead knob: remove it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sources = "".join(p.read_text() for p in [*root.glob("labkit/**/*.py"), *root.glob("notebooks/*.ipynb")]
                      if p.name != "profiles.py")
    unread = [f.name for f in dataclasses.fields(Profile)
              if f.name not in ("name",) and f"profile.{f.name}" not in sources]
    assert not unread, f"profile fields that nothing reads: {unread}"


def test_rl_group_divides_the_batch_in_every_profile():
    # trl's RLOOTrainer/GRPOTrainer refuse a batch of completions that is not whole groups
    for profile in PROFILES.values():
        assert profile.rl_generations >= 2, profile.name  # a leave-one-out baseline needs a sibling
        assert profile.rl_batch_size % profile.rl_generations == 0, profile.name
        assert 0 < profile.probe_every <= profile.rl_steps, profile.name
