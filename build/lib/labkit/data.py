"""Reading LabWorld data (every chapter). A malformed row names its file and line."""
from __future__ import annotations

import json
from pathlib import Path

from .paths import DATA_DIR

LABWORLD_DIR = DATA_DIR / "labworld"


class DataError(ValueError):
    """A data file that can't be used; the message names the file and line."""


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Every row of a JSON Lines file, each checked to be an object holding `required` keys."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file. Regenerate LabWorld with: python -m labkit data")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise DataError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
            rows.append(row)
    return rows


def load_rows(name: str, split: str = "train", required: tuple[str, ...] = ()) -> list[dict]:
    """Rows of data/labworld/<name>/<split>.jsonl, e.g. load_rows("finance_task", "test")."""
    return read_jsonl(LABWORLD_DIR / name / f"{split}.jsonl", required)


def load_dataset(name: str, split: str = "train", limit: int | None = None, required: tuple[str, ...] = ()):
    """The same rows as a `datasets.Dataset`, ready for a Trainer (optionally the first `limit`)."""
    from datasets import Dataset

    rows = load_rows(name, split, required)
    return Dataset.from_list(rows[:limit] if limit is not None else rows)
