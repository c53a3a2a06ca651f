"""LoRA on LabWorld's legal task (chapter 3's rank sweep), as a script for `accelerate launch`.

    # one process: the lab's device rule picks CUDA when there is one, else the CPU
    python recipes/lora.py --output_dir runs/lora

    # two CPU processes (DDP over gloo), as tests/test_recipes.py runs it
    accelerate launch --config_file recipes/accelerate/cpu_ddp.yaml --num_cpu_threads_per_process 1 \
        recipes/lora.py --output_dir runs/lora

    # every GPU of one machine (DDP), or several machines (see recipes/accelerate/multi_node.yaml)
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml --num_processes 8 \
        recipes/lora.py --output_dir runs/lora

The profile ($LABKIT_PROFILE or --profile) supplies the numbers, `labkit.training.trainer_args` the
lab's device rule, logging and seed, exactly as in notebooks/03_lora.ipynb's `train` cell; the
trainer call is TRL's own. Each process takes `per_device_train_batch_size` rows per step, so one
optimizer step sees per-device batch x processes x accumulation rows (the effective batch).
"""
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from trl import SFTConfig, SFTTrainer

from labkit.data import load_rows
from labkit.measure import report_ranks
from labkit.model import load_model
from labkit.profiles import get_profile
from labkit.runtime import seed_everything
from labkit.training import recipe_overrides, recipe_parser, trainer_args

DOMAIN = "legal"  # any LabWorld domain with a *_task folder


def make_args(profile, output_dir, **overrides) -> SFTConfig:
    """Chapter 3's arguments for one LoRA run (tests/test_recipes.py checks they equal the notebook's)."""
    chapter = dict(max_steps=profile.train_steps, learning_rate=profile.lora_lr, lr_scheduler_type="constant",
                   max_length=256)
    return trainer_args(profile, output_dir, SFTConfig, **(chapter | overrides))


def lora_config(r: int, target_modules) -> LoraConfig:
    return LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=2 * r, lora_dropout=0.0,
                      target_modules=list(target_modules))


def main(script_args):
    profile = get_profile(script_args.profile)
    overrides = recipe_overrides(script_args)
    args = make_args(profile, script_args.output_dir, **overrides)
    seed_everything(profile.seed)  # the same LoRA A matrices in every process and every run

    model, tokenizer = load_model()
    model = get_peft_model(model, lora_config(profile.lora_r, profile.lora_target_modules))
    train_ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]}
                                  for r in load_rows(f"{DOMAIN}_task", "train")])

    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(args.output_dir)  # the adapter (adapter_model.safetensors), from the main process
    trainer.save_state()                 # trainer_state.json: the loss curve
    report_ranks(trainer)


if __name__ == "__main__":
    main(recipe_parser(__doc__, budget="train_steps").parse_args())
