"""DPO on LabWorld's preference pairs (chapter 6), starting from chapter 5's SFT policy, as a script
for `accelerate launch`. Run chapter 5 first: it saves the policy in artifacts/<profile>/sft-policy/.

    # one process: the lab's device rule picks CUDA when there is one, else the CPU
    python recipes/dpo.py --output_dir runs/dpo

    # two CPU processes (DDP over gloo)
    accelerate launch --config_file recipes/accelerate/cpu_ddp.yaml --num_cpu_threads_per_process 1 \\
        recipes/dpo.py --output_dir runs/dpo

    # every GPU of one machine (DDP)
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml --num_processes 8 \\
        recipes/dpo.py --output_dir runs/dpo

The profile ($LABKIT_PROFILE or --profile) supplies the numbers, `labkit.training.trainer_args` the
lab's device rule, logging and seed, exactly as in notebooks/06_rlhf.ipynb's DPO cell; the trainer
call is TRL's own. Every process keeps the frozen reference model (a copy of the policy) too.
"""
import argparse

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from labkit.data import load_rows
from labkit.model import load_sft_policy
from labkit.profiles import get_profile
from labkit.runtime import seed_everything
from labkit.training import trainer_args


def make_args(profile, output_dir, **overrides) -> DPOConfig:
    """Chapter 6's DPO arguments (tests/test_recipes.py checks that they equal the notebook's)."""
    chapter = dict(checkpoints=False, max_steps=profile.dpo_steps, learning_rate=profile.dpo_lr,
                   beta=profile.dpo_beta, per_device_train_batch_size=profile.rm_batch_size, max_length=128)
    return trainer_args(profile, output_dir, DPOConfig, **(chapter | overrides))


def main(script_args):
    profile = get_profile(script_args.profile)
    overrides = {k: v for k, v in vars(script_args).items() if k in ("gradient_accumulation_steps",
                 "per_device_train_batch_size", "max_steps") and v is not None}
    args = make_args(profile, script_args.output_dir, **overrides)
    seed_everything(profile.seed)

    model, tokenizer = load_sft_policy(profile.name)  # from a folder: DPO rebuilds its reference from it
    effective = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    pairs = load_rows("preferences", "train", required=("prompt", "chosen", "rejected"))
    pairs = pairs[: args.max_steps * effective]  # the pairs the steps can see, as in chapter 6
    train_ds = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in pairs])

    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=train_ds,
                         processing_class=tokenizer)
    trainer.train()
    trainer.save_model(args.output_dir)  # the tuned policy, from the main process
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
                        help="default: the profile's rm_batch_size")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=None)
    parser.add_argument("--max_steps", type=int, default=None, help="default: the profile's dpo_steps")
    main(parser.parse_args())
