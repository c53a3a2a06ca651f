"""Where the lab keeps its files (every chapter).

`ROOT` is the lab's folder: `$LABKIT_ROOT` if set, else the nearest folder at or above the
current directory that holds `_toc.yml` (notebooks run inside `notebooks/`), else the folder
above this package. Results go to `$LABKIT_RESULTS_DIR` if set, else `ROOT/results`; models that
chapters train to `$LABKIT_ARTIFACTS_DIR` if set, else `ROOT/artifacts`.

A `LABKIT_ROOT` that is not a folder, or has no `data/`, does not stop `import labkit` (so that
`python -m labkit doctor` can say so): `ROOT_PROBLEM` says what is wrong, `doctor` reports it as
a FAIL, and loading the embedded model names the variable.
"""
from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    if os.environ.get("LABKIT_ROOT", "").strip():
        return Path(os.environ["LABKIT_ROOT"].strip()).expanduser().resolve()
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "_toc.yml").exists():
            return folder
    return Path(__file__).resolve().parent.parent


def root_problem(root: Path | None = None) -> str | None:
    """What is wrong with `$LABKIT_ROOT` (None when it is unset or a lab folder with data/)."""
    value = os.environ.get("LABKIT_ROOT")
    if not value or not value.strip():
        return None
    root = root or _find_root()
    if not root.exists():
        return f"LABKIT_ROOT={value!r} does not exist ({root})"
    if not root.is_dir():
        return f"LABKIT_ROOT={value!r} is a file, not the lab's folder"
    if not (root / "data").is_dir():
        return (f"LABKIT_ROOT={value!r} has no data/ folder (the lab's LabWorld data and base model): "
                "point it at a checkout of the lab, or unset it")
    return None


ROOT = _find_root()
ROOT_PROBLEM = root_problem(ROOT)
DATA_DIR = ROOT / "data"
RESULTS_DIR = Path(os.environ.get("LABKIT_RESULTS_DIR") or ROOT / "results").expanduser()
MODELS_DIR = DATA_DIR / "models"
ARTIFACTS_DIR = Path(os.environ.get("LABKIT_ARTIFACTS_DIR") or ROOT / "artifacts").expanduser()
