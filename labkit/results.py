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

from . import paths
from .fastimport import jsonschema as _jsonschema
from .profiles import Profile
from .runtime import environment

jsonschema = _jsonschema()  # without rfc3987_syntax's parsers (labkit/fastimport.py)

SCHEMA_VERSION = 1
HEADLINE_FIELDS = {"run", "metric", "before", "claim", "higher_is_better"}
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


def _check_version(doc, source) -> None:
    """A file from another schema version gets a message saying what to do, not a schema error."""
    if not isinstance(doc, dict):
        raise ResultsError(f"results file {source}: expected a JSON object, got {type(doc).__name__}")
    version = doc.get("schema_version")
    if version == SCHEMA_VERSION or version is None:
        return  # a missing version is reported by the schema check, as a missing field
    chapter = doc.get("chapter") or Path(str(source)).stem
    number = isinstance(version, (int, float)) and not isinstance(version, bool)
    if number and version < SCHEMA_VERSION:
        raise ResultsError(
            f"results file {source}: written by an older labkit (schema_version {version}; this labkit "
            f"reads version {SCHEMA_VERSION}). Re-run notebooks/{chapter}.ipynb (or `make book`) to "
            f"rewrite it, or delete the file.")
    if number:
        raise ResultsError(
            f"results file {source}: written by a newer labkit (schema_version {version}; this labkit "
            f"reads version {SCHEMA_VERSION}). Update this checkout (git pull) and reinstall (make setup).")
    raise ResultsError(f"results file {source}: field 'schema_version' must be the integer "
                       f"{SCHEMA_VERSION}, got {version!r}")


def _check_verdicts(doc: dict, source) -> None:
    """Each claim's `holds` must follow from its measured value, threshold and interval, so a
    verdict can't be edited by hand or lost in a conversion (e.g. infinity written as null)."""
    for i, claim in enumerate(doc.get("claims", [])):
        measured = claim.get("measured")
        if measured is None and claim.get("measured_nonfinite") in ("inf", "-inf", "nan"):
            measured = float(claim["measured_nonfinite"])
        comparison = claim.get("comparison", ">=")
        expected = _holds(measured, claim.get("threshold"), comparison, claim.get("interval"))
        if claim.get("holds") is not expected:
            interval = f", interval {claim['interval']}" if "interval" in claim else ""
            raise ResultsError(
                f"results file {source}: field 'claims[{i}].holds' is {claim.get('holds')}, but claim "
                f"{claim.get('id')!r} ({measured} {comparison} {claim.get('threshold')}{interval}) "
                f"gives {expected}")


def _check_headline(doc: dict, source) -> None:
    """An optional `headline` (see `Results.headline`) must name a run, a metric of it, and
    (when given) a claim and a `before` that exist in the same file."""
    decl = doc.get("headline")
    if decl is None:
        return
    where = f"results file {source}: field 'headline'"
    if not (isinstance(decl, dict) and isinstance(decl.get("run"), str)
            and isinstance(decl.get("metric"), str)):
        raise ResultsError(f"{where} must be an object with string fields 'run' and 'metric', got {decl!r}")
    unknown = set(decl) - HEADLINE_FIELDS
    if unknown:
        raise ResultsError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    runs = {r.get("name"): r for r in doc.get("runs", [])}
    if decl["run"] not in runs:
        raise ResultsError(f"{where}.run names {decl['run']!r}; the runs are: {', '.join(map(str, runs))}")
    if decl["metric"] not in runs[decl["run"]].get("metrics", {}):
        raise ResultsError(f"{where}.metric: run {decl['run']!r} has no metric {decl['metric']!r}")
    if "claim" in decl and decl["claim"] not in {c.get("id") for c in doc.get("claims", [])}:
        raise ResultsError(f"{where}.claim names {decl['claim']!r}, which is not a claim of this file")
    if not isinstance(decl.get("higher_is_better", True), bool):
        raise ResultsError(f"{where}.higher_is_better must be true or false")
    before = decl.get("before")
    if before is None:
        return
    if not isinstance(before, dict) or not before:
        raise ResultsError(f"{where}.before must be an object: {{run, metric}} or {{value, label}}")
    if "value" in before:
        value = before["value"]
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if set(before) - {"value", "label"} or not number:
            raise ResultsError(f"{where}.before: a finite number 'value' and an optional 'label' only, "
                               f"got {before!r}")
        return
    if set(before) - {"run", "metric"}:
        raise ResultsError(f"{where}.before: fields 'run' and 'metric' only, got {before!r}")
    run = before.get("run", decl["run"])
    metric = before.get("metric", decl["metric"])
    if run not in runs or metric not in runs[run].get("metrics", {}):
        raise ResultsError(f"{where}.before: no metric {metric!r} in a run named {run!r}")


def validate(doc: dict, source: str | Path = "(in memory)") -> None:
    """Raise ResultsError naming the first failing field, e.g.
    "results file results/cpu/03_lora.json: missing required field 'runs'". A file from an
    older or newer schema version says so and what to do; a claim whose `holds` does not
    follow from its own numbers is named."""
    _check_version(doc, source)
    errors = list(jsonschema.Draft202012Validator(schema()).iter_errors(doc))
    if not errors:
        _check_verdicts(doc, source)
        _check_headline(doc, source)
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


def _nonfinite(value: float | None) -> str | None:
    """"inf", "-inf" or "nan" for a value JSON can't hold as a number; None otherwise."""
    if value is None or math.isfinite(float(value)):
        return None
    return str(float(value))


def _number(value: float | None) -> float | None:
    """A JSON number, or None for a missing or non-finite value (JSON has no NaN)."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _holds(measured: float | None, threshold: float | None, comparison: str,
           interval: list[float] | None = None) -> bool:
    """`measured <comparison> threshold`; with an interval, the bound facing the threshold must
    clear it (the low end for > and >=, the high end for < and <=; == needs the whole interval
    equal), so a comparison inside the noise does not hold."""
    if measured is None or threshold is None or math.isnan(measured):
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
        self._headline: dict | None = None

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
        only when the interval's bound facing the threshold clears it.

        JSON has no infinity or NaN. A non-finite `threshold` raises ValueError (a claim against
        an infinite bound can't fail). A non-finite `measured` is written as null with
        `measured_nonfinite` ("inf", "-inf" or "nan") beside it, and the verdict is decided on
        the true value: a perplexity that overflowed to inf does not hold for "< 10" and does
        hold for "> 100"; NaN holds for nothing."""
        if comparison not in COMPARISONS:
            raise ValueError(f"comparison must be one of {', '.join(COMPARISONS)}, not {comparison!r}")
        if threshold is not None and not math.isfinite(float(threshold)):
            raise ValueError(f"claim {id!r}: threshold must be a finite number, got {threshold}: JSON "
                             "can't store it, and a claim against an infinite bound can't fail")
        nonfinite = _nonfinite(measured)
        true_value = None if measured is None else float(measured)
        measured, threshold = _number(measured), _number(threshold)
        if interval is not None:
            interval = [float(interval[0]), float(interval[1])]
            if not (math.isfinite(interval[0]) and math.isfinite(interval[1])) or interval[0] > interval[1]:
                raise ValueError(f"claim {id!r}: interval must be two finite numbers, low <= high; "
                                 f"got {interval}")
        holds = _holds(true_value, threshold, comparison, interval)
        entry = {"id": id, "text": text, "measured": measured, "threshold": threshold,
                 "comparison": comparison, "holds": holds}
        if nonfinite:
            entry["measured_nonfinite"] = nonfinite
        if interval is not None:
            entry["interval"] = interval
            entry["confidence"] = float(confidence if confidence is not None else 0.95)
        if n is not None:
            entry["n"] = int(n)
        self.claims = [c for c in self.claims if c["id"] != id] + [entry]
        return holds

    def headline(self, run: str, metric: str, *, before_run: str | None = None,
                 before_metric: str | None = None, before_value: float | None = None,
                 before_label: str | None = None, claim: str | None = None,
                 higher_is_better: bool = True) -> dict:
        """Declare which run and metric stand for this chapter in the book's summary (chapter
        11), and what it is compared with: another run's metric (`before_run`, default the same
        metric), another metric of the same run (`before_metric` alone), or a value measured in
        the notebook (`before_value`, with `before_label` saying what it is). `claim` names the
        claim whose interval goes with the gain. Only names are stored; the summary reads the
        numbers from the runs. Checked when the file is written."""
        decl: dict = {"run": run, "metric": metric}
        if before_value is not None:
            decl["before"] = {"value": float(before_value)}
            if before_label:
                decl["before"]["label"] = before_label
        elif before_run is not None or before_metric is not None:
            named = (("run", before_run), ("metric", before_metric))
            decl["before"] = {k: v for k, v in named if v is not None}
        if claim is not None:
            decl["claim"] = claim
        if not higher_is_better:
            decl["higher_is_better"] = False
        self._headline = decl
        return decl

    def claim_record(self, id: str) -> dict:
        """The recorded entry of claim `id` (its `holds`, `measured`, `interval`, `n`, ...), for a
        summary that explains a verdict. Raises KeyError for an unknown id."""
        found = [c for c in self.claims if c["id"] == id]
        if not found:
            raise KeyError(f"no claim {id!r}; recorded: {', '.join(c['id'] for c in self.claims)}")
        return found[0]

    def verdict(self, id: str) -> str:
        """One claim as a phrase for a chapter's summary, e.g.
        "+0.42 (95% interval +0.31 to +0.53, n=100): holds". Raises KeyError for an unknown id."""
        c = self.claim_record(id)
        value = "n/a" if c["measured"] is None else f"{c['measured']:+.3g}"
        extra = ""
        if "interval" in c:
            low, high = c["interval"]
            extra = f" ({c['confidence']:.0%} interval {low:+.3g} to {high:+.3g}"
            extra += f", n={c['n']})" if "n" in c else ")"
        verdict = "holds" if c["holds"] else "does NOT hold"
        return f"{value}{extra} vs {c['comparison']} {c['threshold']:g}: {verdict}"

    def to_dict(self) -> dict:
        doc = {"schema_version": SCHEMA_VERSION, "chapter": self.chapter, "method": self.method,
               "profile": self.profile, "environment": environment(self.profile), "runs": self.runs,
               "claims": self.claims}
        if self._headline is not None:
            doc["headline"] = self._headline
        return doc

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
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ResultsError(f"results file {path}: not valid JSON ({err}); re-run its notebook "
                               "to rewrite it, or delete the file") from None
        validate(doc, path)
        out[doc["chapter"]] = doc
    return out
