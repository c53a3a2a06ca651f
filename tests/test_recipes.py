"""The recipes in recipes/ (chapters 3, 4, 5 and 6 as scripts for `accelerate launch`).

- The notebook and the script build the same trainer arguments (and, for LoRA, the same adapter
  config) in every profile: the `trainer_args(...)` call is read out of the notebook's training
  cell and evaluated next to the script's, so neither can change without the other.
- Two CPU processes (DDP over gloo, recipes/accelerate/cpu_ddp.yaml; the LoRA and full fine-tuning
  recipes only, to fit CI's time) against one process with two accumulation steps, the same
  effective batch (per-device 2 x 2 processes x 1 = 2 x 1 x 2):
  both ranks run every step and end with the same weights; the loss curves agree within
  LOSS_TOLERANCE; the saved adapter / model loads with labkit and generates.

Set RECIPES_REPORT=<file> to write the measured numbers there (book/scaling-out-run.txt is
made that way and included in the "Scaling out" appendix).
"""
import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
CPU_DDP = RECIPES / "accelerate" / "cpu_ddp.yaml"
# Per-step loss, two processes vs one with accumulation. What can still differ: the order of the
# float32 sums (gloo's all-reduce of two gradients vs the local sum over two micro-batches, and the
# token count gathered across processes vs summed over micro-batches). With two processes a + b = b + a:
# measured here, exactly 0; more processes or uneven splits can differ in the last float32 digits.
LOSS_TOLERANCE = 1e-4
RANK_LINE = re.compile(r"rank (\d+) of (\d+) \((\w+)\): (\d+) steps .*?checksum ([-+0-9.e]+\d)")


def _recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(notebook: str, marker: str) -> ast.Module:
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return ast.parse(next(s for s in sources if marker in s))


def _notebook_args(notebook: str, namespace: dict, marker: str = "def train("):
    """Evaluate the `trainer_args(...)` call of the notebook's training cell (the one with `marker`)."""
    calls = [n for n in ast.walk(_cell(notebook, marker))
             if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "trainer_args"]
    assert len(calls) == 1, f"{notebook}: {len(calls)} trainer_args calls in the train cell, not one"
    return eval(compile(ast.Expression(calls[0]), notebook, "eval"), namespace)


def _comparable(args) -> dict:
    return {k: v for k, v in args.to_dict().items() if k not in ("output_dir", "logging_dir")}


@pytest.mark.parametrize("profile_name", ["smoke", "cpu", "gpu"])
def test_notebook_and_script_build_the_same_arguments(profile_name, tmp_path):
    from peft import LoraConfig
    from trl import SFTConfig

    from labkit.profiles import get_profile
    from labkit.training import trainer_args

    profile = get_profile(profile_name)
    base = dict(profile=profile, SFTConfig=SFTConfig, trainer_args=trainer_args,
                run_dir=lambda *a, **k: tmp_path, name="run")

    lora = _recipe("lora")
    in_notebook = _notebook_args("03_lora.ipynb", {**base, "steps": profile.train_steps,
                                                   "lr": profile.lora_lr})
    assert _comparable(in_notebook) == _comparable(lora.make_args(profile, tmp_path))
    # chapter 3's adapter: its lora_config, run next to the script's
    ns = {"LoraConfig": LoraConfig, "profile": profile}
    cell = next(c for c in json.loads((ROOT / "notebooks" / "03_lora.ipynb").read_text())["cells"]
                if "def lora_config(" in "".join(c["source"]))
    fn = next(n for n in ast.parse("".join(cell["source"])).body
              if isinstance(n, ast.FunctionDef) and n.name == "lora_config")
    exec(compile(ast.Module([fn], []), "03_lora.ipynb", "exec"), ns)
    assert ns["lora_config"](profile.lora_r).to_dict() == \
        lora.lora_config(profile.lora_r, profile.lora_target_modules).to_dict()

    full = _recipe("full_finetuning")
    in_notebook = _notebook_args("04_full_finetuning.ipynb", {**base, "steps": profile.train_steps,
                                                              "lr": profile.full_ft_lr, "callbacks": ()})
    assert _comparable(in_notebook) == _comparable(full.make_args(profile, tmp_path))

    sft = _recipe("sft")
    for assistant_only in (True, False):
        namespace = {**base, "assistant_only": assistant_only, "seed": profile.seed}
        in_notebook = _notebook_args("05_instruction_tuning.ipynb", namespace, marker="def tune(")
        assert _comparable(in_notebook) == _comparable(sft.make_args(profile, tmp_path, assistant_only))

    from trl import DPOConfig

    dpo = _recipe("dpo")
    in_notebook = _notebook_args("06_rlhf.ipynb", {**base, "DPOConfig": DPOConfig, "work": tmp_path,  # at the
                                                   "name": "dpo", "lr": profile.dpo_lr},  # first rate
                                 marker="dpo_args = trainer_args(")
    assert _comparable(in_notebook) == _comparable(dpo.make_args(profile, tmp_path))


def test_the_argument_check_notices_a_change(tmp_path):
    """The comparison above fails when one side changes an argument (here: max_length)."""
    from labkit.profiles import get_profile

    profile = get_profile("smoke")
    lora = _recipe("lora")
    changed = lora.make_args(profile, tmp_path, max_length=128)
    assert _comparable(lora.make_args(profile, tmp_path)) != _comparable(changed)


def _run(cmd: list[str], tmp_path: Path, name: str) -> str:
    env = {**os.environ, "LABKIT_PROFILE": "smoke", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    (tmp_path / f"{name}.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"{name} failed:\n{(done.stdout + done.stderr)[-4000:]}"
    return done.stdout + done.stderr


def _losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [h["loss"] for h in history if "loss" in h]


def _ranks(log: str) -> dict[int, tuple]:
    return {int(m[1]): (int(m[2]), m[3], int(m[4]), float(m[5])) for m in RANK_LINE.finditer(log)}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["lora", "full_finetuning"])
def test_two_cpu_processes_match_one(recipe, tmp_path):
    import torch
    from peft import PeftModel

    from labkit.generation import generate
    from labkit.model import load_model
    from labkit.profiles import get_profile

    steps = get_profile("smoke").train_steps
    script = str(RECIPES / f"{recipe}.py")
    one, two = tmp_path / "one", tmp_path / "two"
    log_one = _run([sys.executable, script, "--output_dir", str(one), "--gradient_accumulation_steps", "2"],
                   tmp_path, "one")
    accelerate = str(Path(sys.executable).parent / "accelerate")
    log_two = _run([accelerate, "launch", "--config_file", str(CPU_DDP), "--num_processes", "2",
                    "--num_cpu_threads_per_process", "1", script, "--output_dir", str(two)], tmp_path, "two")

    ranks_one, ranks_two = _ranks(log_one), _ranks(log_two)
    assert set(ranks_two) == {0, 1}, log_two[-3000:]  # both ranks ran the script to its end
    for rank, (world, kind, done, _) in ranks_two.items():
        assert (world, kind, done) == (2, "MULTI_CPU", steps), (rank, world, kind, done)
    checksum_0, checksum_1 = ranks_two[0][3], ranks_two[1][3]
    assert checksum_0 == checksum_1  # DDP: every rank took the same optimizer steps
    assert checksum_0 == pytest.approx(ranks_one[0][3], rel=1e-5)

    loss_one, loss_two = _losses(one), _losses(two)
    assert len(loss_one) == len(loss_two) == steps
    gap = max(abs(a - b) for a, b in zip(loss_one, loss_two))
    assert gap <= LOSS_TOLERANCE, (loss_one, loss_two)

    base, tokenizer = load_model()
    prompt = "Question: what does the contract say?\nAnswer:"
    batch = tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        base_logits = base(**batch).logits
    if recipe == "lora":
        trained = PeftModel.from_pretrained(load_model()[0], two)
    else:
        trained, _ = load_model(str(two))
    with torch.no_grad():
        moved = (trained(**batch).logits - base_logits).abs().max().item()
    answer = generate(trained, tokenizer, [prompt], 8)
    assert moved > 0 and len(answer) == 1 and isinstance(answer[0], str)

    lines = [f"{recipe}: {steps} steps; effective batch 2 rows x 2 processes x 1 accumulation "
             "(two processes) = 2 rows x 1 process x 2 accumulation (one process)",
             f"  rank 0: {ranks_two[0][2]} steps, weight checksum {checksum_0:.9e}",
             f"  rank 1: {ranks_two[1][2]} steps, weight checksum {checksum_1:.9e}",
             f"  one process: weight checksum {ranks_one[0][3]:.9e}",
             f"  loss, two processes: {', '.join(f'{x:.6f}' for x in loss_two)}",
             f"  loss, one process:   {', '.join(f'{x:.6f}' for x in loss_one)}",
             f"  largest per-step loss difference {gap:.2e} (tolerance {LOSS_TOLERANCE:g})",
             f"  saved {'adapter' if recipe == 'lora' else 'model'} loads; largest logit change from the "
             f"base {moved:.3f}; greedy answer {answer[0]!r}"]
    print("\n".join(lines))
    if os.environ.get("RECIPES_REPORT"):
        with open(os.environ["RECIPES_REPORT"], "a") as f:
            f.write("\n".join(lines) + "\n")
