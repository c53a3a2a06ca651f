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
        assert args.bf16 is False and args.save_strategy == "no"


def test_overrides_win_and_unknown_names_fail(tmp_path):
    args = sft_config(PROFILES["smoke"], output_dir=tmp_path, max_steps=7, logging_steps=3)
    assert args.max_steps == 7 and args.logging_steps == 3
    with pytest.raises(TypeError):
        sft_config(PROFILES["smoke"], output_dir=tmp_path, max_seq_length=128)  # renamed in TRL
