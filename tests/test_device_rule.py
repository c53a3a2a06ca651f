"""The lab's one device rule (labkit.runtime.train_on_cpu) is decided in labkit and nowhere else:
trainers get it from labkit.training.trainer_args, models and tensors go to compute_device(profile).

A notebook that spells the rule itself (`use_cpu=profile.name != "gpu"`, `device.type != "cuda"`)
trains on the CPU while `measure()` reads CUDA memory on a GPU machine in `smoke`: this scan fails
on any such decision in a notebook's code or a tool."""
import json
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TOOLS = sorted((ROOT / "tools").glob("*.py"))

# Each pattern is a device decision; the message says what to write instead.
FORBIDDEN = {
    r"\buse_cpu\s*=(?!=)": "trainer arguments come from labkit.training.trainer_args (it sets use_cpu)",
    r"\bno_cuda\s*=(?!=)": "trainer arguments come from labkit.training.trainer_args",
    r"cuda\.is_available": "the device comes from labkit.runtime.compute_device(profile)",
    r"\.type\s*[!=]=": "the device comes from labkit.runtime.compute_device(profile)",
    r"\.cuda\(\)|\.cpu\(\)\s*$": "move models and tensors with .to(device), device = compute_device(profile)",
    r"""torch\.device\(\s*["']""": "the device comes from labkit.runtime.compute_device(profile)",
    r"""\.to\(\s*["'](cpu|cuda)""":
        "move models and tensors with .to(device), device = compute_device(profile)",
    r"""profile\.name\s*[!=]=\s*["'](gpu|cpu)""": "the device rule is labkit.runtime.train_on_cpu(profile)",
}


def code_lines(path: Path) -> list[tuple[str, str]]:
    """(where, line) for every code line of a notebook or a script, comments dropped."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        sources = [
            (f"cell {i}", "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "code"
        ]
    else:
        sources = [("", path.read_text())]
    out = []
    for where, source in sources:
        for n, line in enumerate(source.splitlines(), 1):
            code = line.split("#", 1)[0]
            if code.strip():
                out.append((f"{path.name} {where} line {n}".replace("  ", " "), code))
    return out


def device_decisions(path: Path) -> list[str]:
    return [f"{where}: {line.strip()}  <- {why}" for where, line in code_lines(path)
            for pattern, why in FORBIDDEN.items() if re.search(pattern, line)]


@pytest.mark.parametrize("path", NOTEBOOKS + TOOLS, ids=lambda p: p.name)
def test_no_device_decision_outside_labkit(path):
    found = device_decisions(path)
    assert not found, "device decided outside labkit.runtime:\n" + "\n".join(found)


def test_the_scan_finds_the_broken_spellings(tmp_path):
    """The scan itself would catch each way the rule was broken before (chapters 6–9)."""
    broken = tmp_path / "broken.py"
    for line in ['args = SFTConfig(output_dir="x", use_cpu=profile.name != "gpu")',
                 'on_cpu = device.type != "cuda"',
                 'teacher.to("cpu")',
                 'x = torch.zeros(3).cuda()',
                 'if torch.cuda.is_available(): pass']:
        broken.write_text(line + "\n")
        assert device_decisions(broken), line
    broken.write_text("device = compute_device(profile)\nmodel.to(device)\n")
    assert device_decisions(broken) == []


@pytest.mark.parametrize("config_name", ["SFTConfig", "RewardConfig", "DPOConfig", "RLOOConfig", "GRPOConfig",
                                         "TrainingArguments"])
@pytest.mark.parametrize("profile_name", ["smoke", "cpu"])
def test_trainer_args_follow_the_rule(config_name, profile_name, tmp_path, monkeypatch):
    """Every config class the lab uses gets use_cpu from train_on_cpu, on a CUDA machine too."""
    import transformers
    import trl

    from labkit.profiles import get_profile
    from labkit.runtime import train_on_cpu
    from labkit.training import trainer_args

    config = getattr(trl, config_name, None) or getattr(transformers, config_name)
    profile = get_profile(profile_name)
    for cuda in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        expected = train_on_cpu(profile)
        assert expected == (profile_name == "cpu" or not cuda)
        if not expected and not torch.backends.cuda.is_built():
            continue  # a CPU build of torch cannot make a CUDA config: the rule above is what matters
        # num_generations divides the batch
        extra = {"num_generations": 2} if config_name in ("GRPOConfig", "RLOOConfig") else {}
        args = trainer_args(profile, tmp_path, config, max_steps=7, **extra)
        assert isinstance(args, config)
        assert args.use_cpu is expected and args.seed == profile.seed and args.max_steps == 7
        assert args.per_device_train_batch_size == profile.batch_size and args.report_to == []
