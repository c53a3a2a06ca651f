"""Full fine-tuning on LabWorld's legal task (chapter 4), as a script for `accelerate launch`.

    # one process: the lab's device rule picks CUDA when there is one, else the CPU
    python recipes/full_finetuning.py --output_dir runs/full

    # two CPU processes (DDP over gloo), as tests/test_recipes.py runs it
    accelerate launch --config_file recipes/accelerate/cpu_ddp.yaml --num_cpu_threads_per_process 1 \
        recipes/full_finetuning.py --output_dir runs/full

    # every GPU of one machine, parameters, gradients and optimizer states sharded (FSDP)
    accelerate launch --config_file recipes/accelerate/fsdp.yaml --num_processes 8 \
        recipes/full_finetuning.py --output_dir runs/full

The profile ($LABKIT_PROFILE or --profile) supplies the numbers, `labkit.training.trainer_args` the
lab's device rule, logging and seed, exactly as in notebooks/04_full_finetuning.ipynb's `train`
cell; the trainer call is TRL's own. Like the notebook, the run sees each training row at most
once: max_steps x effective batch rows, effective batch = per-device batch x processes x accumulation.
"""
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from labkit.data import load_rows
from labkit.measure import report_ranks
from labkit.model import load_model
from labkit.profiles import get_profile
from labkit.runtime import seed_everything
from labkit.training import recipe_overrides, recipe_parser, trainer_args

DOMAIN = "legal"  # any LabWorld domain with a *_task folder


def make_args(profile, output_dir, **overrides) -> SFTConfig:
    """Chapter 4's arguments for one full fine-tuning run (tests/test_recipes.py checks that they
    equal the notebook's)."""
    chapter = dict(max_steps=profile.train_steps, learning_rate=profile.full_ft_lr,
                   lr_scheduler_type="constant_with_warmup", warmup_steps=profile.ch4_warmup_steps,
                   max_length=256)
    return trainer_args(profile, output_dir, SFTConfig, **(chapter | overrides))


def main(script_args):
    profile = get_profile(script_args.profile)
    overrides = recipe_overrides(script_args)
    args = make_args(profile, script_args.output_dir, **overrides)
    seed_everything(profile.seed)

    model, tokenizer = load_model()
    # Under FSDP (recipes/accelerate/fsdp.yaml) accelerate wraps each decoder layer in its own shard
    # unit: the class named in the model's `_no_split_modules`, read from the model, not hard-coded.
    print(f"decoder layer: {type(model.model.layers[0]).__name__}; "
          f"model._no_split_modules = {model._no_split_modules}", flush=True)
    effective = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    n_rows = args.max_steps * effective  # each row at most once, as in chapter 4
    train_ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]}
                                  for r in load_rows(f"{DOMAIN}_task", "train")[:n_rows]])

    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(args.output_dir)  # the whole model (gathered to one file under FSDP's FULL_STATE_DICT)
    trainer.save_state()                 # trainer_state.json: the loss curve
    report_ranks(trainer)


if __name__ == "__main__":
    main(recipe_parser(__doc__, budget="train_steps").parse_args())
