"""Each chapter's measured results (every chapter; the summary chapter reads them back).

    results = Results("03_lora", "LoRA / PEFT", profile)
    results.add_run(m.as_run(...))
    results.claim("fewer_params", "LoRA trains under 1% of the weights", measured=pct,
                  threshold=1.0, comparison="<")
    results.write()   # -> results/<profile>/03_lora.json

The file follows labkit/schema/results.schema.json and is checked against it before it is
written; it is written atomically, so a crash never leaves a half-written file behind.
"""
from __future__ import annotations

import json
import math
import operator
import os
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema

from . import paths
from .profiles import Profile
from .runtime import environment

SCHEMA_VERSION = 1
COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
               "==": operator.eq}


class ResultsError(ValueError):
    """A results document does not follow the schema; the message names the field."""


@lru_cache(maxsize=1)
def schema() -> dict:
    """The results schema shipped with labkit."""
    return json.loads(resources.files("labkit").joinpath("schema/results.schema.json").read_text())


def _where(path) -> str:
    """jsonschema's path as the reader writes it: runs[0].metrics.accuracy"""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validate(doc: dict, source: str | Path = "(in memory)") -> None:
    """Raise ResultsError naming the first failing field, e.g.
    "results file results/cpu/03_lora.json: missing required field 'runs'"."""
    errors = list(jsonschema.Draft202012Validator(schema()).iter_errors(doc))
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors)
    where = _where(error.absolute_path)
    if error.validator == "required":
        missing = [f for f in error.validator_value if f not in error.instance]
        field = f"{where}.{missing[0]}" if where else missing[0]
        problem = f"missing required field {field!r}"
    else:
        problem = f"field {where or '(top level)'!r}: {error.message}"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    raise ResultsError(f"results file {source}: {problem}{more}")


def _number(value: float | None) -> float | None:
    """A JSON number, or None for a missing or non-finite value (JSON has no NaN)."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _holds(measured: float | None, threshold: float | None, comparison: str,
           interval: list[float] | None = None) -> bool:
    """`measured <comparison> threshold`; with an interval, the bound facing the threshold must
    clear it (the low end for > and >=, the high end for < and <=; == needs the whole interval
    equal), so a comparison inside the noise does not hold."""
    if measured is None or threshold is None:
        return False
    if interval is None:
        return bool(COMPARISONS[comparison](measured, threshold))
    low, high = interval
    bound = {">": low, ">=": low, "<": high, "<=": high}.get(comparison)
    if bound is None:  # ==
        return bool(low == high == threshold)
    return bool(COMPARISONS[comparison](measured, threshold) and COMPARISONS[comparison](bound, threshold))


class Results:
    """Collects one chapter's runs and claims, then writes results/<profile>/<chapter>.json.
    Re-running a notebook cell replaces the run or claim of the same name instead of adding
    a duplicate."""

    def __init__(self, chapter: str, method: str, profile: Profile | str):
        self.chapter = chapter
        self.method = method
        self.profile = profile.name if isinstance(profile, Profile) else profile
        self.runs: list[dict] = []
        self.claims: list[dict] = []

    def add_run(self, run: dict) -> dict:
        """Add one run (from `Measurement.as_run`); returns it."""
        self.runs = [r for r in self.runs if r.get("name") != run.get("name")] + [run]
        return run

    def claim(self, id: str, text: str, measured: float | None, threshold: float | None,
              comparison: str = ">=", interval: list[float] | None = None,
              confidence: float | None = None, n: int | None = None) -> bool:
        """Record a statement of the lesson and whether `measured <comparison> threshold`
        holds in this run (never hidden when it doesn't); returns that verdict.

        A comparative claim passes `interval` (its `confidence` level, e.g. 0.95) and `n` (test
        items behind it), usually as `**labkit.stats.paired_difference(a, b)`; it then holds
        only when the interval's bound facing the threshold clears it."""
        if comparison not in COMPARISONS:
            raise ValueError(f"comparison must be one of {', '.join(COMPARISONS)}, not {comparison!r}")
        measured, threshold = _number(measured), _number(threshold)
        if interval is not None:
            interval = [float(interval[0]), float(interval[1])]
            if not (math.isfinite(interval[0]) and math.isfinite(interval[1])) or interval[0] > interval[1]:
                raise ValueError(f"claim {id!r}: interval must be two finite numbers, low <= high; got {interval}")
        holds = _holds(measured, threshold, comparison, interval)
        entry = {"id": id, "text": text, "measured": measured, "threshold": threshold,
                 "comparison": comparison, "holds": holds}
        if interval is not None:
            entry["interval"] = interval
            entry["confidence"] = float(confidence if confidence is not None else 0.95)
        if n is not None:
            entry["n"] = int(n)
        self.claims = [c for c in self.claims if c["id"] != id] + [entry]
        return holds

    def to_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "chapter": self.chapter, "method": self.method,
                "profile": self.profile, "environment": environment(), "runs": self.runs,
                "claims": self.claims}

    def table(self):
        """The claims as a pandas DataFrame, for showing at the end of a chapter."""
        import pandas as pd

        frame = pd.DataFrame(self.to_dict()["claims"])
        columns = ["id", "measured", "interval", "comparison", "threshold", "holds", "n", "text"]
        return frame[[c for c in columns if c in frame.columns]]

    def write(self, results_dir: str | Path | None = None) -> Path:
        """Validate, then write atomically to <results_dir>/<profile>/<chapter>.json."""
        target = Path(results_dir or paths.RESULTS_DIR) / self.profile / f"{self.chapter}.json"
        doc = self.to_dict()
        validate(doc, target)
        write_json_atomic(target, doc)
        return target


def write_json_atomic(target: Path, doc: dict) -> None:
    """Write to a temporary file beside `target`, flush it to disk, then rename it over
    `target`: readers see the old file or the new one, never a partial one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for everyone to read
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_results(profile: Profile | str | None = None,
                 results_dir: str | Path | None = None) -> dict[str, dict]:
    """Every chapter's results for a profile (default: the current one), by chapter, each
    checked against the schema."""
    if profile is None:
        from .profiles import get_profile

        profile = get_profile()
    name = profile.name if isinstance(profile, Profile) else profile
    out = {}
    for path in sorted((Path(results_dir or paths.RESULTS_DIR) / name).glob("*.json")):
        doc = json.loads(path.read_text())
        validate(doc, path)
        out[doc["chapter"]] = doc
    return out
