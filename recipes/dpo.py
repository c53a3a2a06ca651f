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
lab's device rule, logging and seed, exactly as in notebooks/06_rlhf.ipynb's DPO cell at its first
rate (`profile.dpo_lr`; the chapter also tries `profile.dpo_lr_sweep`); the trainer call is TRL's own.
It trains on the written pairs only: the chapter adds ranked samples of the SFT policy, which need
the gold judge and the policy's own samples. Every process keeps the frozen reference model (a copy of
the policy) too.
"""
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from labkit.data import load_rows
from labkit.measure import report_ranks
from labkit.model import load_sft_policy
from labkit.profiles import get_profile
from labkit.runtime import seed_everything
from labkit.training import recipe_overrides, recipe_parser, trainer_args


def make_args(profile, output_dir, **overrides) -> DPOConfig:
    """Chapter 6's DPO arguments (tests/test_recipes.py checks that they equal the notebook's)."""
    chapter = dict(checkpoints=False, max_steps=profile.dpo_steps, learning_rate=profile.dpo_lr,
                   beta=profile.dpo_beta, loss_type=["sigmoid", "sft"],
                   per_device_train_batch_size=profile.rm_batch_size, max_length=128)
    return trainer_args(profile, output_dir, DPOConfig, **(chapter | overrides))


def main(script_args):
    profile = get_profile(script_args.profile)
    overrides = recipe_overrides(script_args)
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
    report_ranks(trainer)


if __name__ == "__main__":
    main(recipe_parser(__doc__, budget="dpo_steps").parse_args())
