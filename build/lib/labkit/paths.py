"""Where the lab keeps its files (every chapter).

`ROOT` is the lab's folder: `$LABKIT_ROOT` if set, else the nearest folder at or above the
current directory that holds `_toc.yml` (notebooks run inside `notebooks/`), else the folder
above this package. Results go to `$LABKIT_RESULTS_DIR` if set, else `ROOT/results`.
"""
from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    if os.environ.get("LABKIT_ROOT"):
        return Path(os.environ["LABKIT_ROOT"]).expanduser().resolve()
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "_toc.yml").exists():
            return folder
    return Path(__file__).resolve().parent.parent


ROOT = _find_root()
DATA_DIR = ROOT / "data"
RESULTS_DIR = Path(os.environ.get("LABKIT_RESULTS_DIR") or ROOT / "results").expanduser()
MODELS_DIR = DATA_DIR / "models"
