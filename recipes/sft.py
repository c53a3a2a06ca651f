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
from datasets import Dataset
from trl import SFTConfig, SFTTrainer
from trl.chat_template_utils import get_training_chat_template

from labkit.data import load_rows
from labkit.measure import report_ranks
from labkit.model import load_model
from labkit.profiles import get_profile
from labkit.runtime import seed_everything
from labkit.training import recipe_overrides, recipe_parser, trainer_args


def make_args(profile, output_dir, assistant_only: bool, **overrides) -> SFTConfig:
    """Chapter 5's arguments (tests/test_recipes.py checks that they equal the notebook's)."""
    chapter = dict(max_steps=profile.sft_steps, learning_rate=profile.sft_lr,
                   per_device_train_batch_size=profile.sft_batch_size,
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
    overrides = recipe_overrides(script_args)
    args = make_args(profile, script_args.output_dir, assistant_only, **overrides)
    rows = load_rows("instructions", "train", required=("family", "messages"))
    train_ds = Dataset.from_list([training_row(r, tokenizer, assistant_only) for r in rows])

    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(args.output_dir)  # the whole model and its tokenizer, from the main process
    trainer.save_state()                 # trainer_state.json: the loss curve
    report_ranks(trainer)


if __name__ == "__main__":
    main(recipe_parser(__doc__, budget="sft_steps").parse_args())
