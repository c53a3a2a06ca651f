"""Where the lab keeps its files (every chapter)."""
from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    if os.environ.get("LABKIT_ROOT"):
        return Path(os.environ["LABKIT_ROOT"]).resolve()
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "_toc.yml").exists():
            return folder
    return Path(__file__).resolve().parent.parent


ROOT = _find_root()
DATA_DIR = ROOT / "data"
RESULTS_DIR = Path(os.environ.get("LABKIT_RESULTS_DIR", ROOT / "results"))
MODELS_DIR = DATA_DIR / "models"
