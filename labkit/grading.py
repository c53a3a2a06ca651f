"""Exercises for instructors (every chapter): student editions and a per-exercise grader.

The notebooks in `notebooks/` are the instructor edition. An exercise is

- one or more code cells tagged `solution`: the answer sits between the lines
  `### BEGIN SOLUTION` and `### END SOLUTION` (nbgrader's markers); a cell tagged `solution`
  without markers is all answer;
- then one or more code cells tagged `check` that call `labkit.checks.check` / `check_true`.
  (A notebook with no `check` tag at all is read the older way: the code cells after a solution
  that call `check(...)` / `check_true(...)` are its checks.)

`student_edition` replaces each answer by a stub (`answer = ...`, which the check reports as
"no answer yet", or `raise NotImplementedError` inside an indented block), clears the outputs and
keeps the checks. `grade` runs submitted notebooks with nbclient, letting execution continue past
errors so that every exercise gets its own verdict, and writes JUnit XML, CSV and Markdown.

Commands (see README, "For instructors"):

    python -m labkit student [OUT_DIR]                 # default _build/student/
    python -m labkit grade SUBMISSIONS_DIR --profile smoke --out REPORT_DIR

Formats: nbgrader's solution markers (https://nbgrader.readthedocs.io, "Autograded answer
cells"); JUnit XML as read by CI services (the `testsuites/testsuite/testcase/failure` subset).
"""
from __future__ import annotations

import ast
import copy
import csv
import io
import os
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

SOLUTION_TAG = "solution"
CHECK_TAG = "check"
BEGIN_RE = re.compile(r"^\s*#+\s*BEGIN SOLUTION\s*$")
END_RE = re.compile(r"^\s*#+\s*END SOLUTION\s*$")
CHECK_CALL_RE = re.compile(r"(?<![\w])(?:checks\.)?check(?:_true)?\s*\(")
TITLE_RE = re.compile(r"\*\*\s*(\d+)\.\s*(.+?)\s*\*\*")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NO_STUDENT = "-"


class GradingError(ValueError):
    """A notebook or folder that cannot be turned into a student edition or graded."""


# ---- reading exercises ---------------------------------------------------------------------

@dataclass
class Exercise:
    """One exercise of a notebook: its number (1, 2, ... in notebook order), a title taken from
    the exercise's `**N. Title.**` line, and the indices of its solution and check cells."""
    number: int
    title: str
    solution_cells: list[int] = field(default_factory=list)
    check_cells: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.number}. {self.title}" if self.title else f"exercise {self.number}"


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def _parse(source: str) -> ast.AST | None:
    """The cell parsed as Python, IPython magics and shell lines blanked; None if it does not parse."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _check_names(source: str) -> list[str]:
    """The first argument of each `check(...)` / `check_true(...)` call when it is a string."""
    tree = _parse(source)
    names = []
    for node in ast.walk(tree) if tree else []:
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            fname = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if fname in ("check", "check_true") and isinstance(node.args[0].value, str):
                names.append(node.args[0].value)
    return names


def find_exercises(nb) -> list[Exercise]:
    """The exercises of notebook `nb` (an nbformat notebook), in order.

    A new exercise starts at a `solution` cell that follows a check, or an exercise's title
    (`**N. Title.**` in markdown), or is the first one; the check cells up to the next exercise
    belong to it. Raises GradingError for a `check` cell
    that comes before any solution."""
    tagged = any(CHECK_TAG in _tags(c) for c in nb.cells if c.cell_type == "code")
    exercises: list[Exercise] = []
    last_markdown_title: tuple[int, str] | None = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            found = TITLE_RE.findall(cell.source)
            if found:
                last_markdown_title = (int(found[-1][0]), found[-1][1].rstrip(". "))
            continue
        if cell.cell_type != "code":
            continue
        tags = _tags(cell)
        if SOLUTION_TAG in tags:
            if not exercises or exercises[-1].check_cells or last_markdown_title is not None:
                number = len(exercises) + 1
                title = last_markdown_title[1] if last_markdown_title else ""
                exercises.append(Exercise(number, title))
                last_markdown_title = None
            exercises[-1].solution_cells.append(index)
        elif CHECK_TAG in tags or (not tagged and exercises and CHECK_CALL_RE.search(cell.source)):
            if not exercises:
                raise GradingError(f"cell {index} is tagged `{CHECK_TAG}` but no `{SOLUTION_TAG}` "
                                   f"cell comes before it")
            exercises[-1].check_cells.append(index)
    for ex in exercises:
        if not ex.title:
            names = [n for i in ex.check_cells for n in _check_names(nb.cells[i].source)]
            ex.title = ", ".join(names)
    return exercises


# ---- student editions ----------------------------------------------------------------------

def solution_regions(source: str) -> list[tuple[int, int]]:
    """Line ranges (first, last), 0-based and inclusive, of the answer in a solution cell:
    each `### BEGIN SOLUTION` .. `### END SOLUTION` block including its markers, or the whole
    cell when it has no markers. Raises GradingError on a marker without its partner."""
    lines = source.splitlines()
    regions, start = [], None
    for i, line in enumerate(lines):
        if BEGIN_RE.match(line):
            if start is not None:
                raise GradingError(f"line {i + 1}: BEGIN SOLUTION inside another BEGIN SOLUTION")
            start = i
        elif END_RE.match(line):
            if start is None:
                raise GradingError(f"line {i + 1}: END SOLUTION without a BEGIN SOLUTION")
            regions.append((start, i))
            start = None
    if start is not None:
        raise GradingError(f"line {start + 1}: BEGIN SOLUTION without an END SOLUTION")
    if not regions and lines:
        return [(0, len(lines) - 1)]
    return regions


def _assigned_names(source: str, first: int, last: int) -> list[str]:
    """Top-level names assigned on lines first..last (0-based) of `source`, in order."""
    tree = _parse(source)
    names: list[str] = []

    def add(target):
        if isinstance(target, ast.Name):
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                add(t)

    if tree is not None:
        for node in tree.body:
            if first <= node.lineno - 1 <= last:
                if isinstance(node, ast.Assign):
                    for t in node.targets:
                        add(t)
                elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                    add(node.target)
    else:  # does not parse (a magic inside a block, say): take `name = ...` lines
        for line in source.splitlines()[first:last + 1]:
            m = re.match(r"^(\w+)\s*=(?!=)", line)
            if m:
                names.append(m.group(1))
    return list(dict.fromkeys(names))


def _loaded_names(sources: list[str]) -> set[str] | None:
    """Names the check cells read; None when one of them does not parse."""
    names: set[str] = set()
    for source in sources:
        tree = _parse(source)
        if tree is None:
            return None
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return names


def stub_source(source: str, number: int, check_sources: list[str]) -> str:
    """The solution cell `source` with each answer region replaced by a stub for exercise `number`.

    At the top level, the stub sets each name the answer assigns and the checks read to `...`
    (`labkit.checks.check` reports that as "no answer yet"); inside an indented block, or when
    no such name exists, it is `raise NotImplementedError("Exercise N: write your answer here")`."""
    lines = source.splitlines()
    read = _loaded_names(check_sources)
    out: list[str] = []
    cursor = 0
    for first, last in solution_regions(source):
        out.extend(lines[cursor:first])
        indent = re.match(r"\s*", lines[first]).group(0) if lines else ""
        names = [] if indent else _assigned_names(source, first, last)
        if read is not None:
            names = [n for n in names if n in read]
        out.append(f"{indent}# Exercise {number}: write your answer here.")
        if names:
            out.extend(f"{indent}{name} = ...  # your answer" for name in names)
        else:
            out.append(f'{indent}raise NotImplementedError("Exercise {number}: write your answer here")')
        cursor = last + 1
    out.extend(lines[cursor:])
    return "\n".join(out)


def _clear(cell) -> None:
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    for key in ("execution", "collapsed", "scrolled"):
        cell.metadata.pop(key, None)


def student_edition(nb, source_name: str = "") -> nbformat.NotebookNode:
    """A copy of notebook `nb` with every answer stubbed, outputs cleared and checks kept.
    Raises GradingError (naming the cell) for a solution without a check or bad markers."""
    nb = copy.deepcopy(nb)
    for ex in find_exercises(nb):
        if not ex.check_cells:
            raise GradingError(f"{source_name} exercise {ex.number} (cell {ex.solution_cells[0]}): "
                               f"no cell tagged `{CHECK_TAG}` follows its solution")
        checks = [nb.cells[i].source for i in ex.check_cells]
        for i in ex.solution_cells:
            try:
                nb.cells[i].source = stub_source(nb.cells[i].source, ex.number, checks)
            except GradingError as e:
                raise GradingError(f"{source_name} cell {i}: {e}") from None
    for cell in nb.cells:
        _clear(cell)
    nb.metadata.pop("widgets", None)
    nb.metadata["labkit"] = {"edition": "student", "source": source_name}
    return nb


def _write_notebook(nb, path: Path) -> None:
    """Write atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)


def make_student_editions(notebooks_dir: Path, out_dir: Path) -> list[Path]:
    """Write the student edition of every `*.ipynb` in `notebooks_dir` into `out_dir`."""
    notebooks_dir, out_dir = Path(notebooks_dir), Path(out_dir)
    sources = sorted(notebooks_dir.glob("*.ipynb"))
    if not sources:
        raise GradingError(f"no notebooks (*.ipynb) in {notebooks_dir}")
    written = []
    for src in sources:
        nb = nbformat.read(str(src), as_version=4)
        _write_notebook(student_edition(nb, src.name), out_dir / src.name)
        written.append(out_dir / src.name)
    return written


# ---- grading -------------------------------------------------------------------------------

@dataclass
class Outcome:
    """The verdict on one exercise of one submitted notebook."""
    student: str
    notebook: str
    exercise: str
    passed: bool
    message: str
    seconds: float = 0.0


@dataclass
class NotebookRun:
    """How one submitted notebook ran: its exercises' outcomes and what else went wrong."""
    student: str
    notebook: str
    outcomes: list[Outcome]
    seconds: float
    other_errors: list[str]
    checks_from: str  # "reference" or "submission"
    executed: Path | None = None


def _first_line(text: str, limit: int = 300) -> str:
    text = ANSI_RE.sub("", str(text)).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _error_text(ename: str, evalue: str) -> str:
    if ename == "AssertionError" and evalue:
        return _first_line(evalue)
    return _first_line(f"{ename}: {evalue}" if evalue else ename)


def _passed_lines(cell) -> str:
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    return "; ".join(line.strip() for line in text.splitlines() if line.strip().startswith("✓"))


def lab_root(explicit: str | Path | None = None) -> Path:
    """The lab folder that holds `data/` (LabWorld and the base model), for grading.

    `explicit`, else `$LABKIT_ROOT`, else `labkit.paths.ROOT` (a checkout or an editable install).
    Raises GradingError saying what to do when that folder lacks the data."""
    from . import paths

    root = Path(explicit or os.environ.get("LABKIT_ROOT") or paths.ROOT).expanduser().resolve()
    needed = [root / "data" / "labworld", root / "data" / "models" / "labworld-base" / "config.json"]
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise GradingError(
            f"the lab's data is not under {root} (missing: {', '.join(str(p) for p in missing)}). "
            "Grading runs the notebooks, which read LabWorld and the base model from the lab's data/ "
            "folder. Point --lab-root (or LABKIT_ROOT) at a checkout of the lab, e.g. "
            "`git clone --depth 1 <lab repository> lab && python -m labkit grade ... --lab-root lab`.")
    return root


def _sandbox(out: Path, student: str, root: Path) -> Path:
    """A per-student lab root under the report folder: `data` links to the lab's data, while
    results/ and artifacts/ (models one chapter hands to the next) stay this student's own."""
    safe = re.sub(r"[^\w.-]+", "_", student) or "_"
    box = (out / "work" / safe).resolve()
    (box / "notebooks").mkdir(parents=True, exist_ok=True)
    link = box / "data"
    if not link.exists():
        try:
            link.symlink_to(root / "data", target_is_directory=True)
        except OSError:  # no symlinks (some Windows setups): share the lab's root instead
            return root
    return box


def _restore_checks(nb, reference) -> tuple[list[Exercise], str]:
    """Exercises to grade, with the check cells' code taken from `reference` (the instructor
    edition) when the exercises line up, so that an edited check cannot pass a wrong answer."""
    mine = find_exercises(nb)
    if reference is None:
        return mine, "submission"
    theirs = find_exercises(reference)
    if len(mine) != len(theirs) or any(len(a.check_cells) != len(b.check_cells)
                                       for a, b in zip(mine, theirs)):
        return mine, "submission (its exercises differ from the reference)"
    for a, b in zip(mine, theirs):
        for i, j in zip(a.check_cells, b.check_cells):
            nb.cells[i].source = reference.cells[j].source
        a.title = b.title
    return mine, "reference"


def grade_notebook(path: Path, student: str, *, profile: str, timeout: int, workdir: Path,
                   reference_path: Path | None = None, kernel: str = "python3",
                   executed_path: Path | None = None) -> NotebookRun:
    """Run one submitted notebook to the end (errors do not stop it) and grade each exercise.

    An exercise passes when its solution and check cells ran without error. A cell that runs
    past `timeout` seconds is interrupted and counts as an error; a dead kernel fails the
    exercises not yet reached. The kernel runs in `workdir`, with LABKIT_ROOT its parent."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    reference = nbformat.read(str(reference_path), as_version=4) if reference_path else None
    expected = find_exercises(reference) if reference is not None else []
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as e:  # not JSON, not a notebook
        why = f"cannot read the notebook: {_first_line(e)}"
        return NotebookRun(student, path.name, [Outcome(student, path.name, ex.label, False, why)
                                                for ex in expected], 0.0, [why], "reference")
    try:
        exercises, checks_from = _restore_checks(nb, reference)
    except GradingError as e:
        exercises, checks_from = [], str(e)
    errors: dict[int, str] = {}
    started: dict[int, float] = {}
    durations: dict[int, float] = {}

    def on_start(cell, cell_index):
        started[cell_index] = time.perf_counter()

    def on_complete(cell, cell_index, execute_reply):
        durations[cell_index] = time.perf_counter() - started.get(cell_index, time.perf_counter())

    def on_error(cell, cell_index, execute_reply):
        content = execute_reply.get("content", {})
        errors[cell_index] = _error_text(content.get("ename", "Error"), content.get("evalue", ""))

    # A notebook's own `execution.timeout` (as nbmake reads it) counts from the reference only.
    nb_timeout = ((reference.metadata.get("execution", {}) or {}) if reference is not None else {}).get(
        "timeout", timeout)
    client = NotebookClient(
        nb, timeout=nb_timeout, kernel_name=kernel, allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": "Timeout", "evalue": f"cell ran past {nb_timeout} s and was interrupted"},
        resources={"metadata": {"path": str(workdir)}},
        on_cell_start=on_start, on_cell_executed=on_complete, on_cell_error=on_error)
    env = {**os.environ, "LABKIT_PROFILE": profile, "LABKIT_ROOT": str(workdir.parent),
           "LABKIT_RESULTS_DIR": str(workdir.parent / "results"), "MPLBACKEND": "Agg"}
    stopped = ""
    kernel_log = workdir.parent / f"kernel-{path.stem}.log"  # the kernel's own messages, not cells'
    t0 = time.perf_counter()
    try:
        with open(kernel_log, "w", encoding="utf-8") as klog:
            client.execute(env=env, stdout=klog, stderr=klog)
    except DeadKernelError as e:
        stopped = f"the kernel died ({_first_line(e)}; see {kernel_log})"
    except Exception as e:  # a kernel that cannot start, a cell that hangs the client
        stopped = f"{type(e).__name__}: {_first_line(e)}"
    seconds = time.perf_counter() - t0
    if executed_path is not None:
        _write_notebook(nb, executed_path)

    outcomes = []
    in_exercise = set()
    for ex in exercises:
        cells = ex.solution_cells + ex.check_cells
        in_exercise.update(cells)
        failed = next((i for i in cells if i in errors), None)
        spent = sum(durations.get(i, 0.0) for i in cells)
        if stopped and any(i not in durations for i in cells):
            passed, message = False, f"not run: {stopped}"
        elif not ex.check_cells:
            passed, message = False, f"no cell tagged `{CHECK_TAG}` checks this exercise"
        elif failed is not None:
            where = "your answer raised" if failed in ex.solution_cells else "check:"
            passed, message = False, f"{where} {errors[failed]}".replace("check: ✗ ", "✗ ")
        else:
            passed, message = True, _passed_lines(nb.cells[ex.check_cells[-1]]) or "passed"
        outcomes.append(Outcome(student, path.name, ex.label, passed, message, round(spent, 2)))
    for ex in expected[len(exercises):]:  # exercises whose cells or tags the student removed
        outcomes.append(Outcome(student, path.name, ex.label, False,
                                "missing from the submission (its `solution`/`check` cells or tags were removed)"))
    other = [f"cell {i}: {errors[i]}" for i in sorted(errors) if i not in in_exercise]
    if stopped:
        other.append(stopped)
    if not exercises:
        other.append(f"no exercises found ({checks_from})" if checks_from not in ("reference", "submission")
                     else "no exercises found (no cell tagged `solution`)")
    return NotebookRun(student, path.name, outcomes, round(seconds, 1), other, checks_from, executed_path)


def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, notebook) pairs: `folder/<student>/**/*.ipynb`, or `folder/*.ipynb` with student
    "-". Sorted by student then notebook name, so a student's chapters run in book order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GradingError(f"submissions folder not found: {folder}")
    found = []
    for path in folder.rglob("*.ipynb"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):  # .ipynb_checkpoints, hidden folders
            continue
        student = rel.parts[0] if len(rel.parts) > 1 else NO_STUDENT
        found.append((student, path))
    if not found:
        raise GradingError(f"no notebooks (*.ipynb) under {folder}")
    return sorted(found, key=lambda sp: (sp[0], sp[1].name, str(sp[1])))


def grade(submissions: Path, out: Path, *, profile: str = "smoke", timeout: int = 900,
          root: str | Path | None = None, reference: str | Path | None = None,
          kernel: str = "python3", log=print) -> list[NotebookRun]:
    """Grade every notebook under `submissions`; write junit.xml, summary.csv, summary.md and
    the executed notebooks (executed/<student>/) into `out`. Returns the runs.

    `reference` is the folder of instructor notebooks whose check cells replace the submitted
    ones (default: the lab root's notebooks/ when it exists; "" to keep the submitted checks)."""
    out = Path(out)
    lab = lab_root(root)
    pairs = find_submissions(Path(submissions))
    if reference is None:
        reference = lab / "notebooks" if (lab / "notebooks").is_dir() else ""
    ref_dir = Path(reference) if reference else None
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for student, path in pairs:
        box = _sandbox(out, student, lab)
        workdir = box / "notebooks"
        ref = ref_dir / path.name if ref_dir and (ref_dir / path.name).exists() else None
        executed = out / "executed" / re.sub(r"[^\w.-]+", "_", student) / path.name
        log(f"grading {student}/{path.name} ({profile}) ...")
        run = grade_notebook(path, student, profile=profile, timeout=timeout, workdir=workdir,
                             reference_path=ref, kernel=kernel, executed_path=executed)
        ok = sum(o.passed for o in run.outcomes)
        log(f"  {ok}/{len(run.outcomes)} exercises pass in {run.seconds:.0f} s"
            + (f"; other errors: {'; '.join(run.other_errors)}" if run.other_errors else ""))
        runs.append(run)
    write_reports(runs, out, profile=profile, root=lab)
    return runs


# ---- reports -------------------------------------------------------------------------------

CSV_COLUMNS = ["student", "notebook", "exercise", "result", "message"]


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def junit_xml(runs: list[NotebookRun]) -> str:
    """JUnit XML: one testsuite per submitted notebook, one testcase per exercise; a notebook
    with errors outside its exercises gets a `notebook runs` testcase that fails."""
    suites = ET.Element("testsuites", name="labkit grade")
    total = failures = 0
    for run in runs:
        cases = [(o.exercise, o.passed, o.message, o.seconds) for o in run.outcomes]
        if run.other_errors:
            cases.append(("notebook runs", False, "; ".join(run.other_errors), 0.0))
        suite = ET.SubElement(suites, "testsuite", name=f"{run.student}/{run.notebook}",
                              tests=str(len(cases)), failures=str(sum(not c[1] for c in cases)),
                              errors="0", time=f"{run.seconds:.1f}")
        for name, passed, message, seconds in cases:
            case = ET.SubElement(suite, "testcase", name=name, time=f"{seconds:.2f}",
                                 classname=f"{run.student}.{Path(run.notebook).stem}")
            if not passed:
                ET.SubElement(case, "failure", message=message).text = message
            else:
                ET.SubElement(case, "system-out").text = message
        total += len(cases)
        failures += sum(not c[1] for c in cases)
    suites.set("tests", str(total))
    suites.set("failures", str(failures))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def summary_csv(runs: list[NotebookRun]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for run in runs:
        for o in run.outcomes:
            writer.writerow([o.student, o.notebook, o.exercise, "pass" if o.passed else "fail", o.message])
    return buffer.getvalue()


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_markdown(runs: list[NotebookRun], profile: str = "", root: Path | None = None) -> str:
    outcomes = [o for r in runs for o in r.outcomes]
    passed = sum(o.passed for o in outcomes)
    students = sorted({r.student for r in runs})
    lines = ["# Grading report", "",
             f"Profile `{profile}`; {len(students)} student(s), {len(runs)} notebook(s), "
             f"{len(outcomes)} exercise(s): **{passed} pass, {len(outcomes) - passed} fail**."
             + (f" Lab data from `{root}`." if root else ""), "",
             "| student | notebook | pass | fail | seconds | checks from | other errors |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        ok = sum(o.passed for o in r.outcomes)
        lines.append(f"| {_md(r.student)} | {_md(r.notebook)} | {ok} | {len(r.outcomes) - ok} | "
                     f"{r.seconds:.0f} | {_md(r.checks_from)} | {_md('; '.join(r.other_errors)) or '—'} |")
    lines += ["", "| student | notebook | exercise | result | message |", "| --- | --- | --- | --- | --- |"]
    for o in outcomes:
        lines.append(f"| {_md(o.student)} | {_md(o.notebook)} | {_md(o.exercise)} | "
                     f"{'pass' if o.passed else '**fail**'} | {_md(o.message)} |")
    return "\n".join(lines) + "\n"


def write_reports(runs: list[NotebookRun], out: Path, profile: str = "", root: Path | None = None) -> None:
    """junit.xml, summary.csv and summary.md in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / "junit.xml", junit_xml(runs))
    _atomic_text(out / "summary.csv", summary_csv(runs))
    _atomic_text(out / "summary.md", summary_markdown(runs, profile, root))
