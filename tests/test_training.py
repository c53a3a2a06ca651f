"""labkit.training.sft_config: TRL's own SFTConfig, numbers from the profile, overridable."""
import pytest
from trl import SFTConfig

from labkit.profiles import PROFILES
from labkit.runtime import train_on_cpu
from labkit.training import sft_config


def test_sft_config_is_trls_own_with_the_profiles_numbers(tmp_path):
    for profile in PROFILES.values():
        args = sft_config(profile, output_dir=tmp_path / profile.name, learning_rate=3e-2, max_length=128)
        assert type(args) is SFTConfig
        assert args.max_steps == profile.train_steps
        assert args.per_device_train_batch_size == profile.batch_size
        assert args.seed == profile.seed and args.learning_rate == 3e-2 and args.max_length == 128
        assert args.use_cpu is train_on_cpu(profile)
        assert args.bf16 is False
        if profile.checkpoints_per_run:  # cpu and gpu: evenly spaced checkpoints, the newest kept
            assert args.save_strategy == "steps" and args.save_total_limit == 1
            assert args.save_steps == profile.train_steps // profile.checkpoints_per_run
        else:  # smoke: seconds per run, nothing to resume
            assert args.save_strategy == "no"


def test_checkpoints_follow_an_overridden_step_budget(tmp_path):
    cpu = PROFILES["cpu"]
    args = sft_config(cpu, output_dir=tmp_path, max_steps=40)
    assert args.save_steps == 40 // cpu.checkpoints_per_run and args.logging_steps == 2
    assert sft_config(cpu, output_dir=tmp_path, save_strategy="no").save_strategy == "no"


def test_run_dir_outlives_the_kernel_and_is_per_profile_and_run(tmp_path, monkeypatch):
    from labkit import model
    from labkit.training import run_dir

    monkeypatch.setattr(model, "ARTIFACTS_DIR", tmp_path)
    monkeypatch.delenv("LABKIT_MODEL", raising=False)
    a = run_dir("03_lora", "lora finance", PROFILES["cpu"])
    assert a == tmp_path / "cpu" / "runs" / "labworld-base" / "03_lora" / "lora-finance"
    assert run_dir("03_lora", "lora finance", PROFILES["gpu"]) != a
    assert run_dir("03_lora", "lora finance", PROFILES["cpu"], model="org/other") != a  # never resume another model's run
    assert run_dir("03_lora", "lora r=8", PROFILES["cpu"]).name == "lora-r=8"


def test_overrides_win_and_unknown_names_fail(tmp_path):
    args = sft_config(PROFILES["smoke"], output_dir=tmp_path, max_steps=7, logging_steps=3)
    assert args.max_steps == 7 and args.logging_steps == 3
    with pytest.raises(TypeError):
        sft_config(PROFILES["smoke"], output_dir=tmp_path, max_seq_length=128)  # renamed in TRL
