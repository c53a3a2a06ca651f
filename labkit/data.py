"""Reading LabWorld data (every chapter). A malformed row names its file, line and field.

Files are read the way `datasets` reads JSON Lines: UTF-8, with or without a byte-order mark
(as some Windows editors save it), LF or CRLF line ends, blank lines skipped.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from .paths import DATA_DIR

LABWORLD_DIR = DATA_DIR / "labworld"


class DataError(ValueError):
    """A data file that can't be used; the message names the file and line."""


def _json_type(value) -> str:
    """The JSON type of a parsed value: object, array, string, number, boolean, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


_JSON_TYPES = {str: "string", int: "number", float: "number", bool: "boolean", list: "array",
               dict: "object", type(None): "null"}


def _is(value, expected) -> bool:
    """isinstance, except that a bool is not an int (True is not the number 1 in JSON)."""
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in types:
        return False
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return True  # 3 is a valid float
    return isinstance(value, types)


def _names(expected) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(t.__name__ for t in types)


def read_jsonl(path: str | Path, required: tuple[str, ...] | Mapping = ()) -> list[dict]:
    """Every row of a JSON Lines file, each checked to be an object holding `required` keys.

    `required` is a tuple of field names, or a mapping from field name to the Python type(s)
    its value must have, e.g. `{"prompt": str, "a": int}`. Beyond that, a field must keep one
    JSON type through the file (null allowed anywhere), since `datasets`/Arrow can't hold a
    column that is text on one line and a number on another.

    Raises DataError naming `file:line` and the field: a missing file (with how to regenerate
    LabWorld), bytes that are not UTF-8, a line that is not JSON, a row that is not an object,
    a missing field, a field of the wrong type.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file. Regenerate LabWorld with: python -m labkit data")
    types = dict(required) if isinstance(required, Mapping) else {}
    fields = tuple(types) if types else tuple(required)
    seen: dict[str, tuple[str, int]] = {}  # field -> (JSON type, first line with a non-null value)
    rows = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {err.start + 1} of the line); "
                                "save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON "
                                f"({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in fields if k not in row]
            if missing:
                raise DataError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
            for key, expected in types.items():
                if not _is(row[key], expected):
                    raise DataError(f"{path}:{lineno}: field {key!r} should be {_names(expected)}, "
                                    f"got {_json_type(row[key])} {json.dumps(row[key])[:40]}")
            for key, value in row.items():
                kind = _JSON_TYPES.get(type(value)) or _json_type(value)
                if kind == "null":
                    continue
                first = seen.get(key)
                if first is None:
                    seen[key] = (kind, lineno)
                elif first[0] != kind:
                    raise DataError(f"{path}:{lineno}: field {key!r} is a {kind} here but a {first[0]} "
                                    f"at line {first[1]}; a field must keep one type through the file")
            rows.append(row)
    return rows


def load_rows(name: str, split: str = "train", required: tuple[str, ...] | Mapping = ()) -> list[dict]:
    """Rows of data/labworld/<name>/<split>.jsonl, e.g. load_rows("finance_task", "test")."""
    return read_jsonl(LABWORLD_DIR / name / f"{split}.jsonl", required)


def balanced(rows: list[dict], n: int, key: str, groups=None) -> list[dict]:
    """About `n` rows, the same number (n // number of groups, at least 1) from every group of
    `row[key]` (a group with fewer rows gives all it has), so that every task or family is
    represented in a small evaluation. Groups come in the order of `groups`, else of first
    appearance; rows keep their order within a group. Raises ValueError when there is no group."""
    groups = list(groups) if groups is not None else list(dict.fromkeys(r[key] for r in rows))
    if not groups:
        raise ValueError(f"balanced: no rows to group by {key!r}")
    k = max(1, n // len(groups))
    return [r for g in groups for r in [x for x in rows if x[key] == g][:k]]


def load_hf_dataset(name: str, split: str = "train", limit: int | None = None,
                    required: tuple[str, ...] | Mapping = ()):
    """The same rows as a `datasets.Dataset`, ready for a Trainer (optionally the first `limit`).
    Named so as not to shadow `datasets.load_dataset`, which loads from the Hub or files."""
    from datasets import Dataset

    rows = load_rows(name, split, required)
    return Dataset.from_list(rows[:limit] if limit is not None else rows)
