"""The training arguments every chapter shares (introduced in chapter 2, reused in every chapter
that trains), and where each run keeps its checkpoints.

    args = trainer_args(profile, run_dir("03_lora", name, profile), SFTConfig, learning_rate=3e-3)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer)

`trainer_args` returns the library's own config object (`trl.SFTConfig`, `RewardConfig`,
`DPOConfig`, `RLOOConfig`, `GRPOConfig`, or `transformers.TrainingArguments`), not a wrapper: the
profile supplies the numbers (steps, batch size, seed), the lab's one device rule supplies
`use_cpu`, and any keyword overrides them. Print it in a notebook to see every argument the trainer
receives. No chapter sets `use_cpu`, logging, checkpointing or the seed itself
(tests/test_device_rule.py scans every notebook for it).

Resuming after an interruption (a kernel restart mid-training): in `cpu` and `gpu`, `trainer_args`
checkpoints `profile.checkpoints_per_run` times per run with the trainer's own arguments
(`save_strategy="steps"`, `save_steps`, `save_total_limit=1`) into a folder that outlives the kernel,
and the chapter resumes from the last complete checkpoint,

    args = trainer_args(profile, run_dir("03_lora", name, profile), SFTConfig)
    trainer.train(resume_from_checkpoint=resume_checkpoint(args.output_dir, args))

The Trainer restores weights, optimizer, scheduler, RNG states and the data position; the
final metrics match an uninterrupted run (tests/test_training.py measures how closely). A
finished run is not resumed: re-running its cell trains again from the start, so a rerun gives
the same results as the first run.
"""
from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

from .profiles import Profile
from .runtime import train_on_cpu


def run_dir(notebook: str, name: str, profile: Profile, model: str | None = None) -> Path:
    """`ARTIFACTS_DIR/<profile>/runs/<model>/<notebook>/<name>`: a training run's `output_dir`
    that survives a kernel restart (a temporary folder would not), so that re-running the cell
    resumes from the run's last checkpoint. `model` defaults to the active model ($LABKIT_MODEL
    or the embedded one), so another model never resumes this one's checkpoints. `make clean`
    does not delete it; delete the folder to drop the checkpoints."""
    from .model import resolve_model_path
    from .paths import ARTIFACTS_DIR

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-.") or "run"

    model = model or Path(resolve_model_path()).name
    return ARTIFACTS_DIR / profile.name / "runs" / safe(model) / notebook / safe(name)


def trainer_args(profile: Profile, output_dir: str | Path, config=None, *, checkpoints: bool = True,
                 **overrides):
    """The lab's one way to configure a trainer: an instance of `config` (default `trl.SFTConfig`;
    any `transformers.TrainingArguments` subclass: TRL's `RewardConfig`, `DPOConfig`,
    `RLOOConfig`, `GRPOConfig`, or `TrainingArguments` itself) for one run of `profile`.

    Defaults: `max_steps=profile.train_steps`, `per_device_train_batch_size=profile.batch_size`,
    about 20 loss points per run (`logging_steps`), no loggers, `use_cpu=train_on_cpu(profile)`
    (the device rule), `seed=profile.seed`; for TRL's configs also fp32 (`bf16=False`: TRL's default
    bf16 runs slower on a CPU) and no activation checkpointing (it drops a prefix-tuning cache).
    With `checkpoints` (and `profile.checkpoints_per_run > 0`), evenly spaced checkpoints of which
    only the newest is kept (see `resume_checkpoint`); else none. Keywords override any default.
    Raises TypeError, as the config class does, for an argument it does not know.
    Docs: TRL's SFTConfig / RewardConfig / DPOConfig / RLOOConfig; transformers' TrainingArguments.
    """
    if config is None:
        from trl import SFTConfig as config
    fields = {f.name for f in dataclasses.fields(config)}
    steps = overrides.get("max_steps", profile.train_steps)  # logging and checkpoints follow the budget
    args = dict(output_dir=str(output_dir), max_steps=steps,
                per_device_train_batch_size=profile.batch_size,
                logging_steps=max(1, steps // 20), save_strategy="no", report_to=[],
                use_cpu=train_on_cpu(profile), seed=profile.seed)
    args.update({k: v for k, v in dict(bf16=False, activation_checkpointing=False).items() if k in fields})
    if checkpoints and profile.checkpoints_per_run > 0:
        args.update(save_strategy="steps", save_steps=max(1, steps // profile.checkpoints_per_run),
                    save_total_limit=1)
    args.update(overrides)
    return config(**args)


# ---- the command line of the scripts in recipes/ ----------------------------------------------
RECIPE_OVERRIDES = ("per_device_train_batch_size", "gradient_accumulation_steps", "max_steps")


def recipe_parser(doc: str, budget: str = "train_steps"):
    """The command line every script in `recipes/` shares: `--output_dir`, `--profile`, and the
    three arguments that set the effective batch and the step budget (default: the profile's
    `batch_size`, no accumulation, and `profile.<budget>`). `doc` is the script's docstring."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--profile", default=None, help="smoke, cpu or gpu (default: $LABKIT_PROFILE)")
    parser.add_argument("--per_device_train_batch_size", type=int, default=None,
                        help="default: the profile's batch_size")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=None)
    parser.add_argument("--max_steps", type=int, default=None, help=f"default: the profile's {budget}")
    return parser


def recipe_overrides(script_args) -> dict:
    """The `recipe_parser` arguments given on the command line, as `trainer_args` overrides."""
    return {k: v for k, v in vars(script_args).items() if k in RECIPE_OVERRIDES and v is not None}


# ---- resuming an interrupted run ----------------------------------------------------------
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last: its presence marks a complete checkpoint
RUN_RECORD = "labkit-run.json"  # what the run in this folder was started with (resume_checkpoint writes it)
# The arguments that change what a run computes: a checkpoint made with other values belongs to another
# run. Logging, saving and output paths are left out: changing them does not change the weights.
RUN_ARGUMENTS = (
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_ratio", "warmup_steps",
    "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "optim", "optim_args",
    "gradient_accumulation_steps", "per_device_train_batch_size", "max_steps", "num_train_epochs",
    "seed", "data_seed", "full_determinism", "bf16", "fp16", "use_cpu", "label_smoothing_factor",
    "group_by_length", "max_length", "packing", "padding_free", "completion_only_loss",
    "assistant_only_loss", "dataset_text_field", "loss_type", "neftune_noise_alpha",
    "activation_checkpointing", "gradient_checkpointing")


def _state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return None  # killed while saving: an incomplete checkpoint


def _jsonable(value):
    """`value` as plain JSON (enums by value, anything else unknown by its repr)."""
    value = getattr(value, "value", value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    return repr(value)


def _data_fingerprint(data) -> str:
    """A `datasets.Dataset`'s own fingerprint, else a hash of the rows' JSON."""
    import hashlib

    fingerprint = getattr(data, "_fingerprint", None)
    if isinstance(fingerprint, str):
        return fingerprint
    rows = data.to_list() if hasattr(data, "to_list") else list(data)
    return hashlib.sha256(json.dumps(_jsonable(rows), sort_keys=True).encode()).hexdigest()[:16]


def run_signature(args=None, model=None, data=None) -> dict:
    """What a run is: the values of `RUN_ARGUMENTS` in `args` (a `TrainingArguments`, `SFTConfig`,
    ...), the model (`labkit.model.model_name`, or a string) and the data's fingerprint, when given."""
    signature = {}
    if args is not None:
        for name in RUN_ARGUMENTS:
            if hasattr(args, name):
                signature[name] = _jsonable(getattr(args, name))
    if model is not None:
        from .model import model_name

        signature["model"] = model if isinstance(model, str) else model_name(model)
    if data is not None:
        signature["data"] = _data_fingerprint(data)
    return signature


def _record(output_dir: Path, signature: dict) -> None:
    if not signature:
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = output_dir / f".{RUN_RECORD}.tmp"
    tmp.write_text(json.dumps(signature, indent=1, sort_keys=True))
    tmp.replace(output_dir / RUN_RECORD)


def _recorded(output_dir: Path) -> dict | None:
    try:
        record = json.loads((output_dir / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _drop(folders: list[Path]) -> None:
    import shutil

    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def resume_checkpoint(output_dir: str | Path, args=None, *, model=None, data=None) -> str | None:
    """The newest complete `checkpoint-<step>` folder under `output_dir` of a run that did not
    finish, to pass as `trainer.train(resume_from_checkpoint=...)`; None to start from scratch.

    Given the run's `args` (a `TrainingArguments`, `SFTConfig`, ...) and optionally its `model`
    and training `data`, it records them in `output_dir/labkit-run.json` (`run_signature`: every
    argument in `RUN_ARGUMENTS`, e.g. learning rate, schedule, accumulation, batch size, steps,
    seed; the model's name; the data's fingerprint), and resumes only a run recorded with the
    same values. On a difference it warns, naming each one, deletes that run's checkpoints (so
    that a later interruption cannot resume them either) and returns None: training starts from
    scratch.

    None also when: there is no such folder; every checkpoint is incomplete (killed while
    saving); or the newest complete one already reached its `max_steps` (the run finished).
    Checkpoints from before the record existed are compared on what the Trainer's own state
    holds (`max_steps`, the per-device batch size).
    """
    output_dir = Path(output_dir)
    signature = run_signature(args, model, data)
    folders = sorted((p for p in output_dir.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)),
                     key=lambda p: int(_CHECKPOINT.match(p.name).group(1)),
                     reverse=True) if output_dir.is_dir() else []
    recorded = _recorded(output_dir) if folders else None
    for folder in folders:
        state = _state(folder)
        if state is None:
            continue
        if state.get("global_step", 0) >= state.get("max_steps", 0) > 0:
            break  # finished: train again rather than "resume" zero steps
        if recorded is not None and signature:
            differs = {k: (recorded.get(k), v) for k, v in signature.items() if recorded.get(k) != v}
        elif args is not None:  # a checkpoint older than the record: what trainer_state.json holds
            want = {"max_steps": getattr(args, "max_steps", None),
                    "train_batch_size": getattr(args, "per_device_train_batch_size", None)}
            differs = {k: (state.get(k), v) for k, v in want.items()
                       if v not in (None, -1) and state.get(k) not in (None, v)}
        else:
            differs = {}
        if differs:
            said = ", ".join(f"{k} {old!r} there, {new!r} now" if isinstance(old, str) or isinstance(new, str)
                             else f"{k} {old} there, {new} now" for k, (old, new) in differs.items())
            warnings.warn(f"Not resuming from {folder}: it belongs to another run ({said}). "
                          f"Training starts from scratch; that run's checkpoints are deleted.", stacklevel=2)
            _drop(folders)
            break
        _record(output_dir, signature)
        return str(folder)
    _record(output_dir, signature)
    return None
