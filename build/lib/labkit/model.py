"""Loading the base model (every chapter): the embedded LabWorld model by default, a local
directory, or a Hugging Face Hub id for online users — all through `from_pretrained`.

Offline, a Hub id that is not already cached fails in seconds with a message that names the
embedded model, instead of a stack trace from deep inside a library.
"""
from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from .paths import MODELS_DIR, ROOT

EMBEDDED_MODEL = "labworld-base"


class ModelNotAvailable(RuntimeError):
    """The requested model can't be loaded here; the message says what to do instead."""


def base_config(vocab_size: int, eos_token_id: int, pad_token_id: int, hidden_size: int = 192,
                num_hidden_layers: int = 4, num_attention_heads: int = 6,
                intermediate_size: int = 512, max_position_embeddings: int = 512) -> LlamaConfig:
    """The embedded model's architecture: a small Llama (about 2M parameters at the defaults)."""
    return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                       num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                       num_key_value_heads=num_attention_heads, max_position_embeddings=max_position_embeddings,
                       tie_word_embeddings=True, bos_token_id=None, eos_token_id=eos_token_id,
                       pad_token_id=pad_token_id)


def resolve_model_path(name: str | None = None) -> str:
    """`None` → $LABKIT_MODEL or the embedded model; an embedded name or an existing directory →
    its path; anything else is treated as a Hub id."""
    name = name or os.environ.get("LABKIT_MODEL") or EMBEDDED_MODEL
    if (MODELS_DIR / name).is_dir():
        return str(MODELS_DIR / name)
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name == EMBEDDED_MODEL:
        raise ModelNotAvailable(f"The embedded model is missing from {MODELS_DIR / name}. "
                                "Rebuild it with: python -m labkit pretrain")
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
    if not Path(path).is_dir():
        _check_hub(path)
    return path


def load_tokenizer(name: str | None = None):
    return AutoTokenizer.from_pretrained(_loadable_path(name))


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
ARTIFACTS_DIR = ROOT / "artifacts"  # models trained by chapters (not committed)


def sft_policy_dir(profile_name: str) -> Path:
    """Where chapter 5 (instruction tuning) saves its tuned model for chapter 6 (RLHF):
    artifacts/<profile>/sft-policy/ (a normal `save_pretrained` folder)."""
    return ARTIFACTS_DIR / profile_name / "sft-policy"


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
    Move it with `.to(device)` where a chapter trains on a GPU."""
    import torch

    path = _loadable_path(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    model.eval()
    return model, tokenizer
