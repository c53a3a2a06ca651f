"""Instruction tuning (SFT) on LabWorld's instruction conversations (chapter 5), as a script for
`accelerate launch`.

    # one process: the lab's device rule picks CUDA when there is one, else the CPU
    python recipes/sft.py --output_dir runs/sft

    # two CPU processes (DDP over gloo)
    accelerate launch --config_file recipes/accelerate/cpu_ddp.yaml --num_cpu_threads_per_process 1 \\
        recipes/sft.py --output_dir runs/sft

    # every GPU of one machine (DDP)
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml --num_processes 8 \\
        recipes/sft.py --output_dir runs/sft

The profile ($LABKIT_PROFILE or --profile) supplies the numbers, `labkit.training.trainer_args` the
lab's device rule, logging and seed, exactly as in notebooks/05_instruction_tuning.ipynb's `tune`
cell; the trainer call is TRL's own. Effective batch = per-device batch x processes x accumulation.
"""
import argparse

from datasets import Dataset
from trl import SFTConfig, SFTTrainer
from trl.chat_template_utils import get_training_chat_template

from labkit.data import load_rows
from labkit.model import load_model
from labkit.profiles import get_profile
from labkit.runtime import seed_everything
from labkit.training import trainer_args


def make_args(profile, output_dir, assistant_only: bool, **overrides) -> SFTConfig:
    """Chapter 5's arguments (tests/test_recipes.py checks that they equal the notebook's)."""
    chapter = dict(max_steps=profile.sft_steps, learning_rate=profile.sft_lr,
                   assistant_only_loss=assistant_only, max_length=256)
    return trainer_args(profile, output_dir, SFTConfig, **(chapter | overrides))


def can_train_on_assistant_only(tokenizer) -> bool:
    """As in chapter 5: loss on the assistant's tokens only when TRL can mark them in the template."""
    try:
        get_training_chat_template(tokenizer)  # None: ready as it is; a string: TRL patches it itself
        return True
    except ValueError:
        return False


def training_row(row: dict, tokenizer, assistant_only: bool) -> dict:
    if assistant_only:
        return {"messages": row["messages"]}
    prompt = tokenizer.apply_chat_template(row["messages"][:1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(row["messages"], tokenize=False)
    return {"prompt": prompt, "completion": full[len(prompt):]}


def main(script_args):
    profile = get_profile(script_args.profile)
    seed_everything(profile.seed)
    model, tokenizer = load_model()
    assistant_only = can_train_on_assistant_only(tokenizer)
    overrides = {k: v for k, v in vars(script_args).items() if k in ("gradient_accumulation_steps",
                 "per_device_train_batch_size", "max_steps") and v is not None}
    args = make_args(profile, script_args.output_dir, assistant_only, **overrides)
    rows = load_rows("instructions", "train", required=("family", "messages"))
    train_ds = Dataset.from_list([training_row(r, tokenizer, assistant_only) for r in rows])

    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(args.output_dir)  # the whole model and its tokenizer, from the main process
    trainer.save_state()                 # trainer_state.json: the loss curve
    report(trainer)


def report(trainer) -> None:
    """One line per process: what it trained, and a checksum of its trainable weights (the same on
    every rank after each step: DDP averages the gradients, so every copy takes the same step)."""
    acc, args = trainer.accelerator, trainer.args
    effective = args.per_device_train_batch_size * acc.num_processes * args.gradient_accumulation_steps
    local = [getattr(p, "to_local", lambda: p)() for p in trainer.model.parameters() if p.requires_grad]
    checksum = sum(t.detach().double().abs().sum().item() for t in local)  # this process's copy (or shard)
    print(f"rank {acc.process_index} of {acc.num_processes} ({acc.distributed_type.value}): "
          f"{trainer.state.global_step} steps x {args.per_device_train_batch_size} rows x "
          f"{args.gradient_accumulation_steps} accumulation; effective batch {effective}; "
          f"trainable-weight checksum {checksum:.9e}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--profile", default=None, help="smoke, cpu or gpu (default: $LABKIT_PROFILE)")
    parser.add_argument("--per_device_train_batch_size", type=int, default=None,
                        help="default: the profile's batch_size")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=None)
    parser.add_argument("--max_steps", type=int, default=None, help="default: the profile's sft_steps")
    main(parser.parse_args())
