"""Where the lab keeps its files (every chapter).

`ROOT` is the lab's folder: `$LABKIT_ROOT` if set, else the nearest folder at or above the
current directory that holds `_toc.yml` (notebooks run inside `notebooks/`), else the folder
above this package. Results go to `$LABKIT_RESULTS_DIR` if set, else `ROOT/results`; models and
checkpoints that chapters train go to `$LABKIT_ARTIFACTS_DIR` if set, else `ROOT/artifacts`.
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
# models and checkpoints trained by chapters (not committed); $LABKIT_ARTIFACTS_DIR moves them (tests
# that run the notebooks on another model keep its artifacts apart)
ARTIFACTS_DIR = Path(os.environ.get("LABKIT_ARTIFACTS_DIR") or ROOT / "artifacts").expanduser()
MODELS_DIR = DATA_DIR / "models"
