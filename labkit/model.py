"""Loading the base model (every chapter): the embedded LabWorld model by default, a local
directory, or a Hugging Face Hub id for online users — all through `from_pretrained`.

Offline, a Hub id that is not already cached fails in seconds with a message that names the
embedded model, instead of a stack trace from deep inside a library.
"""
from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from . import paths
from .paths import MODELS_DIR, ROOT, ROOT_PROBLEM

EMBEDDED_MODEL = "labworld-base"


class ModelNotAvailable(RuntimeError):
    """The requested model can't be loaded here; the message says what to do instead."""


def base_config(vocab_size: int, eos_token_id: int, pad_token_id: int, hidden_size: int = 192,
                num_hidden_layers: int = 4, num_attention_heads: int = 6,
                intermediate_size: int = 512, max_position_embeddings: int = 512) -> LlamaConfig:
    """The embedded model's architecture: a small Llama (about 2M parameters at the defaults)."""
    return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                       num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                       num_key_value_heads=num_attention_heads,
                       max_position_embeddings=max_position_embeddings,
                       tie_word_embeddings=True, bos_token_id=None, eos_token_id=eos_token_id,
                       pad_token_id=pad_token_id)


def _is_hub_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def resolve_model_path(name: str | None = None) -> str:
    """`None` → $LABKIT_MODEL or the embedded model; an embedded name or an existing directory →
    its path; anything else that is a valid Hub id is treated as one.

    A relative path is looked up in the current folder, then in the lab's folder (notebooks run in
    `notebooks/`, so `LABKIT_MODEL=data/models/x` works from both). Raises ModelNotAvailable,
    naming the variable, for a value with a leading or trailing space, a file instead of a folder,
    or a path that exists nowhere (instead of the Hub's "Repo id must be in the form ...")."""
    from_env = not name and bool(os.environ.get("LABKIT_MODEL"))
    name = name or os.environ.get("LABKIT_MODEL") or EMBEDDED_MODEL
    what = f"LABKIT_MODEL={name!r}" if from_env else f"The model {name!r}"
    if name != name.strip():
        raise ModelNotAvailable(f"{what} has a space at its start or end: remove it "
                                f"({name.strip()!r}).")
    if (MODELS_DIR / name).is_dir():
        return str(MODELS_DIR / name)
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [path, ROOT / path]
    for candidate in candidates:
        if candidate.is_dir():
            return str(candidate)
        if candidate.is_file():
            folder = candidate.parent
            raise ModelNotAvailable(
                f"{what} is a file ({candidate.resolve()}), not a model folder: point it at the folder that "
                "holds config.json, the tokenizer and the *.safetensors weights"
                + (f", here {folder.resolve()}." if (folder / "config.json").exists() else "."))
    if name == EMBEDDED_MODEL:
        if ROOT_PROBLEM:
            raise ModelNotAvailable(f"The embedded model is not under {MODELS_DIR / name}: {ROOT_PROBLEM}.")
        raise ModelNotAvailable(f"The embedded model is missing from {MODELS_DIR / name}. "
                                "Rebuild it with: python -m labkit pretrain")
    if path.is_absolute() or name.startswith((".", "~")) or not _is_hub_id(name):
        looked = ", ".join(str(c.resolve()) for c in candidates)
        raise ModelNotAvailable(
            f"{what} is not a folder (looked in {looked}) and not a Hugging Face Hub id. A relative path "
            f"is read from the current folder ({Path.cwd()}), then from the lab's folder ({ROOT}); give a "
            "folder with config.json, a tokenizer and *.safetensors weights, or a Hub id such as "
            "'HuggingFaceTB/SmolLM2-135M'.")
    return name


def _check_hub(repo_id: str) -> None:
    """Fail fast, with advice, when a Hub id can't be fetched (offline or unknown id)."""
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return  # cached: from_pretrained can load it offline
    advice = f"Use the embedded model instead: load_model('{EMBEDDED_MODEL}') (or unset LABKIT_MODEL)."
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise ModelNotAvailable(f"'{repo_id}' is not a local model and HF_HUB_OFFLINE is set, so it "
                                f"can't be downloaded. {advice}")
    try:
        HfApi().model_info(repo_id, timeout=5)
    except RepositoryNotFoundError:
        raise ModelNotAvailable(f"Unknown model id '{repo_id}': it is neither a local directory, an "
                                f"embedded model ({EMBEDDED_MODEL}) nor a model on the Hugging Face Hub. "
                                f"Check the spelling. {advice}") from None
    except Exception as err:  # DNS failure, refused connection, timeout...
        raise ModelNotAvailable(f"Can't download '{repo_id}': the Hugging Face Hub is not reachable "
                                f"from this machine ({type(err).__name__}). {advice}") from None


def _loadable_path(name: str | None) -> str:
    """A local directory, or a Hub id that was checked to be downloadable (else a clear error)."""
    path = resolve_model_path(name)
    if Path(path).is_dir():
        check_model_folder(path)
    else:
        _check_hub(path)
    return path


# ---- what a model folder must hold ---------------------------------------------------------
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_model_folder(path: str | Path) -> None:
    """Raise ModelNotAvailable, naming what is missing, unless `path` holds a config.json, a
    tokenizer (tokenizer.json, a sentencepiece tokenizer.model, or vocab.json + merges.txt) and
    safetensors weights. Pickle checkpoints (pytorch_model.bin, *.pt) are refused: unpickling a
    file can run code, and `from_pretrained` then needs trust in whoever wrote it."""
    folder = Path(path)
    names = {p.name for p in folder.iterdir()}
    if "config.json" not in names:
        ggufs = sorted(n for n in names if n.endswith(".gguf"))
        hint = (f" It holds a GGUF file ({ggufs[0]}): convert it to a safetensors folder first "
                "(e.g. `python -m labkit models add smollm2-135m-instruct` for SmolLM2)." if ggufs else "")
        raise ModelNotAvailable(f"{folder} is not a transformers model folder: config.json is missing.{hint}")
    if not any(n in names for n in TOKENIZER_FILES):
        raise ModelNotAvailable(
            f"{folder} has no tokenizer files (looked for {', '.join(TOKENIZER_FILES)}). Save the tokenizer "
            "next to the weights: `tokenizer.save_pretrained(folder)` with the tokenizer the model was "
            "trained with.")
    if "vocab.json" in names and "merges.txt" not in names and "tokenizer.json" not in names:
        raise ModelNotAvailable(f"{folder} has vocab.json but no merges.txt: the BPE tokenizer is "
                                "incomplete.")
    if not any(n.endswith(".safetensors") for n in names):
        pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise ModelNotAvailable(
                f"{folder} holds only pickle checkpoints ({', '.join(pickles)}); the lab loads weights from "
                "safetensors only, because unpickling a file can run arbitrary code. If you trust the file, "
                "convert it once: `AutoModelForCausalLM.from_pretrained(folder, use_safetensors=False)"
                ".save_pretrained(folder)` (transformers unpickles with torch.load(weights_only=True)).")
        raise ModelNotAvailable(f"{folder} has no weights: no *.safetensors file.")


_PAD_NOTICES: set[str] = set()


def ensure_pad_token(tokenizer, name: str = ""):
    """Give a tokenizer without a pad token one, the standard way: pad = eos (as TRL's trainers
    and `model.generate` do). Padded positions are masked by the attention mask, so batched
    generation and perplexity are unchanged; prints a note once per model. Returns the tokenizer.

    The catch when training: `transformers.DataCollatorForLanguageModeling` sets the label of
    every pad id to -100, so with pad = eos the model never learns to stop; TRL's SFT collator
    pads the labels separately and keeps eos (HF forum "pad_token = eos_token", and trl's
    `DataCollatorForLanguageModeling`). Raises ModelNotAvailable if there is no eos either."""
    if tokenizer.pad_token is not None:
        return tokenizer
    if tokenizer.eos_token is None:
        raise ModelNotAvailable(f"The tokenizer of {name or 'this model'} has neither a pad nor an eos "
                                "token: set one, e.g. tokenizer.add_special_tokens({'pad_token': '<pad>'}) "
                                "and model.resize_token_embeddings(len(tokenizer)).")
    tokenizer.pad_token = tokenizer.eos_token
    if name not in _PAD_NOTICES:
        _PAD_NOTICES.add(name)
        print(f"labkit: the tokenizer of {Path(name).name or 'this model'} has no pad token; padding with "
              f"its end-of-sequence token {tokenizer.eos_token!r} (pad = eos). Padding is masked out by the "
              "attention mask; when training, keep eos in the labels (TRL's collator does).")
    return tokenizer


def load_tokenizer(name: str | None = None):
    """The model's tokenizer (`AutoTokenizer`), with a pad token (`ensure_pad_token`)."""
    path = _loadable_path(name)
    return ensure_pad_token(AutoTokenizer.from_pretrained(path, trust_remote_code=False), path)


def model_name(model) -> str:
    """The loaded model's name as results files record it: the folder name of a local model
    (e.g. "labworld-base"), or the Hub id it was loaded from."""
    source = str(getattr(model.config, "_name_or_path", "") or "")
    if not source:
        return "unknown (built in memory)"
    return Path(source).name if Path(source).is_dir() else source


def weights_sha256(model) -> str | None:
    """SHA-256 over the loaded model's weight files (`*.safetensors`, sorted by name), so a
    results file names exactly which weights it measured; None for a model built in memory."""
    import hashlib

    folder = Path(str(getattr(model.config, "_name_or_path", "") or ""))
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def model_info(model) -> dict:
    """`base_model` and `base_model_sha256` for `Measurement.as_run(**model_info(model), ...)`."""
    info = {"base_model": model_name(model)}
    sha = weights_sha256(model)
    if sha:
        info["base_model_sha256"] = sha
    return info


# ---- models that one chapter trains and a later chapter starts from -----------------------
def sft_policy_dir(profile_name: str) -> Path:
    """Where chapter 5 (instruction tuning) saves its tuned model for chapter 6 (RLHF):
    artifacts/<profile>/sft-policy/ (a normal `save_pretrained` folder)."""
    return paths.ARTIFACTS_DIR / profile_name / "sft-policy"


def load_sft_policy(profile_name: str, dtype=None):
    """(model, tokenizer) of chapter 5's instruction-tuned model for this profile.
    Raises ModelNotAvailable, saying how to make it, when chapter 5 has not been run."""
    folder = sft_policy_dir(profile_name)
    if not (folder / "config.json").exists():
        raise ModelNotAvailable(
            f"The SFT policy for profile '{profile_name}' is missing ({folder}). It is made by chapter 5: "
            f"run notebooks/05_instruction_tuning.ipynb with LABKIT_PROFILE={profile_name} first "
            f"(`make book` and `make test` run it before this chapter).")
    return load_model(str(folder), dtype=dtype)


def load_model(name: str | None = None, dtype=None):
    """Load (model, tokenizer) for causal LM training or generation, in eval mode on the CPU.
    Move it with `.to(device)` where a chapter trains on a GPU.

    `name`: None ($LABKIT_MODEL or the embedded model), a folder under data/models/, any local
    folder, or a Hub id. Weights load from safetensors only and never with remote code; a folder
    missing its tokenizer or weights raises ModelNotAvailable naming what is missing. A tokenizer
    without a pad token gets pad = eos (`ensure_pad_token`)."""
    import torch

    path = _loadable_path(name)
    tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(path, trust_remote_code=False), path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, use_safetensors=True,
                                                 trust_remote_code=False)
    for config in (model.config, model.generation_config):  # so generate() does not warn each call
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = tokenizer.pad_token_id
    page_in(model)
    model.eval()
    return model, tokenizer


def page_in(model) -> None:
    """Read one value per 4 KB page of every weight. Weights loaded from safetensors are
    memory-mapped: their pages join the process's RSS only when first read, so without this a
    freshly loaded model's weights would count inside the first `labkit.measure.measure` block that
    uses it (SmolLM2-135M: about 500 MB of 'training memory' that was the model itself)."""
    import torch

    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.device.type == "cpu" and tensor.numel():
                flat = tensor.detach().reshape(-1)
                flat[:: max(1, 4096 // tensor.element_size())].sum()


def is_embedded(model) -> bool:
    """True when `model` was loaded from the embedded model's folder (labworld-base)."""
    return model_name(model) == EMBEDDED_MODEL


def embedded_only(model, what: str) -> bool:
    """Guard for an evaluation that only makes sense for the embedded model, which was trained on
    LabWorld (its model card, its ICL and chain-of-thought suites). Returns True for the embedded
    model; otherwise prints that `what` is skipped, and why, and returns False:

        if embedded_only(model, "The model-card comparison"):
            ...
    """
    if is_embedded(model):
        return True
    print(f"{what} is skipped: it only makes sense for the embedded model {EMBEDDED_MODEL}, which was "
          f"trained on LabWorld's data; the loaded model is {model_name(model)}.")
    return False
