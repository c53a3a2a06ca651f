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
import json
import os
import re
import shutil
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



def _key(student: str) -> str:
    """A folder name for `student` that no other name shares: the name made safe, plus a hash of
    the exact name ("ann lee" and "ann_lee" get different folders)."""
    import hashlib

    safe = re.sub(r"[^\w.-]+", "_", student).strip("._")[:60] or "_"
    return f"{safe}-{hashlib.sha256(student.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def _sandbox(out: Path, student: str, root: Path) -> Path:
    """A per-student lab root under the report folder (`work/<key>/`): `data` links to the lab's
    data, while results/ and artifacts/ (models one chapter hands to the next) stay this
    student's own. In the `bwrap` sandbox it is the only folder the kernel can write."""
    name = student if student.startswith(".") else _key(student)  # ".reference": the checking kernel's
    box = (out / "work" / name).resolve()
    (box / "notebooks").mkdir(parents=True, exist_ok=True)
    link = box / "data"
    if not link.exists():
        try:
            link.symlink_to(root / "data", target_is_directory=True)
        except OSError:  # no symlinks (some Windows setups): share the lab's root instead
            return root
    return box


def _answer_names(reference, ex: Exercise) -> list[str]:
    """The names an exercise's answer defines (assignments, functions and classes in its answer
    regions) that its checks read: what crosses from the student's kernel to the checking one."""
    read = _loaded_names([reference.cells[i].source for i in ex.check_cells])
    names: list[str] = []
    for i in ex.solution_cells:
        source = reference.cells[i].source
        tree = _parse(source)
        for first, last in solution_regions(source):
            names += _assigned_names(source, first, last)
            if tree is not None:
                # a function or class that holds (or is inside) the answer: the answer is code
                names += [n.name for n in tree.body if n.lineno - 1 <= last and n.end_lineno - 1 >= first
                          and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    names = list(dict.fromkeys(names))
    return [n for n in names if read is None or n in read]


def _answer_groups(nb) -> tuple[list[list[int]], list[list[int]]]:
    """(solution cells, check cells) per exercise of a submission, without failing on tags the
    student changed: a `check` cell before any solution is ignored here (reported elsewhere)."""
    try:
        exercises = find_exercises(nb)
        return [e.solution_cells for e in exercises], [e.check_cells for e in exercises]
    except GradingError:
        stripped = copy.deepcopy(nb)
        seen_solution = False
        for cell in stripped.cells:
            tags = _tags(cell)
            seen_solution = seen_solution or SOLUTION_TAG in tags
            if CHECK_TAG in tags and not seen_solution:
                cell.metadata["tags"] = [t for t in tags if t != CHECK_TAG]
        exercises = find_exercises(stripped)
        return [e.solution_cells for e in exercises], [e.check_cells for e in exercises]


def _mismatches(nb, reference, expected: list[Exercise]) -> list[str]:
    """How the submission's exercise structure differs from the reference's, in words."""
    problems = []
    try:
        find_exercises(nb)
    except GradingError as e:
        problems.append(str(e))
    solutions, checks = _answer_groups(nb)
    if len(solutions) != len(expected):
        problems.append(f"{len(solutions)} exercise(s) tagged `{SOLUTION_TAG}`, "
                        f"the reference has {len(expected)}")
    for k, ex in enumerate(expected[:len(solutions)]):
        if len(solutions[k]) != len(ex.solution_cells):
            problems.append(f"exercise {k + 1}: {len(solutions[k])} `{SOLUTION_TAG}` cell(s), "
                            f"the reference has {len(ex.solution_cells)}")
        if len(checks[k]) != len(ex.check_cells):
            problems.append(f"exercise {k + 1}: {len(checks[k])} `{CHECK_TAG}` cell(s), "
                            f"the reference has {len(ex.check_cells)}")
    return problems


def _match_reference(nb, name: str, references: dict[str, Path]) -> tuple[str | None, str]:
    """(reference notebook name, why) for a submission: its own name, else the name its student
    edition records, else the reference that at least half of its cells come from."""
    if name in references:
        return name, ""
    recorded = str((nb.metadata.get("labkit", {}) or {}).get("source", "")) if nb is not None else ""
    if recorded in references:
        return recorded, f"the notebook was renamed from {recorded} (graded as {recorded})"
    if nb is None:
        return None, ""
    mine = {c.source.strip() for c in nb.cells if c.source.strip()}
    best, score = None, 0.0
    for ref_name, path in references.items():
        try:
            cells = nbformat.read(str(path), as_version=4).cells
            theirs = {c.source.strip() for c in cells if c.source.strip()}
        except Exception:
            continue
        shared = len(mine & theirs)
        overlap = shared / max(1, len(mine)) if shared >= 2 else 0.0
        if overlap > score:
            best, score = ref_name, overlap
    if best is not None and score >= 0.5:
        return best, (f"the notebook's name matches no reference notebook; graded as {best} "
                      f"({score:.0%} of its cells are that notebook's)")
    return None, ""


def _stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


GRACE_SECONDS = 10  # after a timed-out cell's interrupt, how long the kernel has to become idle


@dataclass
class _Attempt:
    """How a submission ran in its own kernel."""
    errors: dict[int, str] = field(default_factory=dict)
    durations: dict[int, float] = field(default_factory=dict)
    answers: dict[int, dict | str] = field(default_factory=dict)  # exercise -> answers record, or why not
    stopped: str = ""
    seconds: float = 0.0


def _kernel_client(nb, km, timeout: int, workdir: Path, errors: dict[int, str]):
    from nbclient import NotebookClient

    cells = len(nb.cells)  # errors of the notebook's own cells, not of the extra ones (_run_cell)

    def on_error(cell, cell_index, execute_reply):
        if 0 <= cell_index < cells:
            content = execute_reply.get("content", {})
            errors[cell_index] = _error_text(content.get("ename", "Error"), content.get("evalue", ""))

    return NotebookClient(
        nb, km=km, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
        shutdown_kernel="immediate",
        error_on_timeout={"ename": "Timeout", "evalue": f"cell ran past {timeout} s and was interrupted"},
        resources={"metadata": {"path": str(workdir)}}, on_cell_error=on_error)


def _run_cell(client, source: str, index: int | None = None, timeout: int | None = None):
    """Execute `source` as cell `index` of the client's notebook (nbclient writes the executed
    cell back into that position), or, with `index` None, as an extra cell appended for the
    moment and removed afterwards (a probe, an answer capture), whose errors no hook records.
    Returns the executed cell."""
    from nbformat.v4 import new_code_cell

    cell = new_code_cell(source)
    cells = client.nb["cells"]
    extra = index is None
    if extra:
        cells.append(cell)
        index = len(cells) - 1
    saved = client.timeout
    if timeout is not None:
        client.timeout = timeout
    try:
        client.execute_cell(cell, index)
    finally:
        client.timeout = saved
        if extra:
            del cells[index]
    return cell


def _kill(km) -> None:
    """Kill a kernel and its process group (the `none` mode's background processes)."""
    import signal

    from jupyter_core.utils import run_sync

    pgid = getattr(getattr(km, "provisioner", None), "pgid", None)
    try:
        run_sync(km.shutdown_kernel)(now=True)
    except Exception:
        pass
    if pgid and hasattr(os, "killpg"):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


def _run_submission(nb, *, captures: dict[int, tuple[int, list[str]]], timeout: int, workdir: Path,
                    kernel: str, env: dict, mode: str, readonly: list[Path], kernel_log: Path) -> _Attempt:
    """Run every code cell of `nb` in a kernel of its own (sandboxed in `mode`), errors not
    stopping it; after cell i in `captures` ({cell: (exercise, names)}), print that exercise's
    answer values as data. A cell that ignores the interrupt after its timeout gets the kernel
    killed: the remaining cells are not run."""
    from nbclient.exceptions import DeadKernelError

    from . import answers, sandbox

    attempt = _Attempt()
    # the student's box (workdir's parent) is the one writable folder
    km, socket_dir = sandbox.kernel_manager(mode, kernel, workdir, readonly, [workdir.parent])
    client = _kernel_client(nb, km, timeout, workdir, attempt.errors)
    t0 = time.perf_counter()
    try:
        with open(kernel_log, "w", encoding="utf-8") as klog, \
                client.setup_kernel(env=env, stdout=klog, stderr=klog):
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if attempt.stopped:
                    break
                started = time.perf_counter()
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError as e:
                    attempt.stopped = f"the kernel died in cell {index} ({_first_line(e)})"
                    attempt.errors.setdefault(index, "the kernel died")
                    break
                attempt.durations[index] = time.perf_counter() - started
                if attempt.errors.get(index, "").startswith("Timeout"):
                    probe = _run_cell(client, "pass", None, timeout=GRACE_SECONDS)
                    timed_out = any(o.get("ename") == "Timeout" for o in probe.outputs)
                    if timed_out or not probe.get("execution_count"):
                        attempt.stopped = (f"cell {index} ran past {timeout} s and ignored the interrupt: "
                                           "the kernel was killed")
                        _kill(km)
                        break
                if index in captures:
                    number, names = captures[index]
                    source = ("from labkit.answers import emit as __labkit_emit\n"
                              f"__labkit_emit({number}, {names!r}, globals())\ndel __labkit_emit")
                    capture = _run_cell(client, source, None, timeout=max(60, min(timeout, 300)))
                    record = answers.parse(_stream_text(capture))
                    if record is None or record.get("exercise") != number:
                        errs = [o for o in capture.outputs if o.get("output_type") == "error"]
                        why = f" ({_error_text(errs[0]['ename'], errs[0]['evalue'])})" if errs else ""
                        attempt.answers[number] = "its answer values could not be read" + why
                    else:
                        attempt.answers[number] = record["answers"]
    except DeadKernelError as e:
        attempt.stopped = attempt.stopped or f"the kernel died ({_first_line(e)}; see {kernel_log})"
    except Exception as e:  # a kernel that cannot start, a client that loses it
        attempt.stopped = attempt.stopped or f"{type(e).__name__}: {_first_line(e)}"
    finally:
        _kill(km)
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)
    attempt.seconds = time.perf_counter() - t0
    return attempt


class _Checker:
    """The instructor's checks for one reference notebook, in a kernel that never runs a
    submission's code: it runs the reference up to its first exercise once, then, per
    submission, the exercise cells with the answers stubbed (as in the student edition), the
    submission's answer values loaded as data, and the reference's check cells."""

    def __init__(self, reference_path: Path, *, timeout: int, workdir: Path, kernel: str, env: dict, log):
        import contextlib

        from jupyter_client.manager import AsyncKernelManager

        self.reference = nbformat.read(str(reference_path), as_version=4)
        timeout = (self.reference.metadata.get("execution", {}) or {}).get("timeout", timeout)
        self.exercises = find_exercises(self.reference)
        self.names = {ex.number: _answer_names(self.reference, ex) for ex in self.exercises}
        self.stubs = student_edition(self.reference, reference_path.name)
        self.errors: dict[int, str] = {}
        self.broken = ""
        self._stack = contextlib.ExitStack()
        self.km = AsyncKernelManager(kernel_name=kernel)
        self.client = _kernel_client(copy.deepcopy(self.reference), self.km, timeout, workdir, self.errors)
        self.first = min((i for ex in self.exercises for i in ex.solution_cells),
                         default=len(self.reference.cells))
        t0 = time.perf_counter()
        try:
            self._stack.enter_context(self.client.setup_kernel(env=env))
            for index in range(self.first):
                cell = self.client.nb.cells[index]
                if cell.cell_type == "code":
                    self.client.execute_cell(cell, index)
                    if index in self.errors:
                        self.broken = f"the reference notebook failed in cell {index}: {self.errors[index]}"
                        break
        except Exception as e:
            self.broken = f"the reference notebook could not run: {type(e).__name__}: {_first_line(e)}"
        log(f"  reference {reference_path.name} ran to its first exercise in {time.perf_counter() - t0:.0f} s"
            + (f": {self.broken}" if self.broken else ""))

    def verdicts(self, given: dict[int, dict]) -> dict[int, tuple[bool, str]]:
        """{exercise: (passed, message)} for the exercises in `given` ({exercise: answers record})."""

        if self.broken:
            return {k: (False, f"not graded: {self.broken}") for k in given}
        try:
            return self._verdicts(given)
        except Exception as e:  # the checking kernel died or hung: these (and later) verdicts fail
            self.broken = f"the checking kernel failed ({type(e).__name__}: {_first_line(e)})"
            return {k: (False, f"not graded: {self.broken}") for k in given}

    def _verdicts(self, given: dict[int, dict]) -> dict[int, tuple[bool, str]]:
        out: dict[int, tuple[bool, str]] = {}
        owner = {i: ex for ex in self.exercises for i in ex.solution_cells + ex.check_cells}
        last_solution = {ex.solution_cells[-1]: ex for ex in self.exercises}
        for index in range(self.first, len(self.reference.cells)):
            if self.reference.cells[index].cell_type != "code":
                continue
            ex = owner.get(index)
            if ex is not None and index in ex.check_cells and ex.number not in given:
                continue
            source = (self.stubs.cells[index].source if ex is not None and index in ex.solution_cells
                      else self.reference.cells[index].source)
            self.errors.pop(index, None)
            cell = _run_cell(self.client, source, index)
            if ex is not None and index in ex.check_cells:
                if index in self.errors and ex.number not in out:
                    out[ex.number] = (False, f"check: {self.errors[index]}".replace("check: ✗ ", "✗ "))
                elif index == ex.check_cells[-1] and ex.number not in out:
                    text = "; ".join(line.strip() for line in _stream_text(cell).splitlines()
                                     if line.strip().startswith("✓"))
                    out[ex.number] = (True, text or "passed")
            if index in last_solution and last_solution[index].number in given:
                number = last_solution[index].number
                names = self.names[number]
                loaded = _run_cell(self.client, f"for __n in {names!r}:\n    globals().pop(__n, None)\n"
                                                "from labkit.answers import load as __labkit_load\n"
                                                f"globals().update(__labkit_load({json.dumps(given[number])!r}))\n"
                                                "del __labkit_load")
                errs = [o for o in loaded.outputs if o.get("output_type") == "error"]
                if errs:
                    out[number] = (False, f"its answer values could not be loaded: "
                                          f"{_error_text(errs[0]['ename'], errs[0]['evalue'])}")
        for k in given:
            out.setdefault(k, (False, "its check did not run in the reference"))
        return out

    def close(self) -> None:
        try:
            self._stack.close()
        except Exception:
            pass
        _kill(self.km)


def grade_notebook(path: Path, student: str, *, profile: str, timeout: int, workdir: Path,
                   reference_path: Path | None = None, kernel: str = "python3",
                   executed_path: Path | None = None, checker: _Checker | None = None,
                   mode: str = "none", readonly: list[Path] | None = None, renamed: str = "") -> NotebookRun:
    """Run one submitted notebook to the end (errors do not stop it) and grade each exercise.

    With a reference (the instructor edition of the notebook): the submission runs in a kernel
    of its own (sandboxed in `mode` "bwrap"); after each exercise's answer cells, the answer's
    values are read out as data, and `checker` (a kernel that never ran submitted code; started
    here when not given) runs the reference's checks on them. An exercise passes when its answer
    cells ran without error and the reference's checks pass on its values. An answer that is code
    (a function) is checked in the submission's own kernel, with the reference's check cells.
    A submission whose exercises, tags or name differ from the reference gets a failing
    `notebook matches the reference` row naming each difference.

    Without a reference: the submission's own check cells decide (no protection against a
    submission that edits them). The kernel runs in `workdir`, with LABKIT_ROOT its parent."""
    from . import sandbox

    reference = nbformat.read(str(reference_path), as_version=4) if reference_path else None
    expected = find_exercises(reference) if reference is not None else []
    label = lambda ex: ex.label  # noqa: E731
    if reference is not None:  # a notebook's own `execution.timeout` (as nbmake reads it), from the reference
        timeout = (reference.metadata.get("execution", {}) or {}).get("timeout", timeout)
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as e:  # not JSON, not a notebook
        why = f"cannot read the notebook: {_first_line(e)}"
        return NotebookRun(student, path.name, [Outcome(student, path.name, label(ex), False, why)
                                                for ex in expected], 0.0, [why], "reference")
    mismatches = [renamed] if renamed else []
    if reference is not None:
        mismatches += _mismatches(nb, reference, expected)
    solutions, checks = _answer_groups(nb)
    # exercises whose check cells line up with the reference's: the executed notebook shows the
    # reference's checks there (and an answer that is code is checked by them)
    aligned = {k for k, (mine, ex) in enumerate(zip(checks, expected)) if len(mine) == len(ex.check_cells)}
    for k in aligned:
        for i, j in zip(checks[k], expected[k].check_cells):
            nb.cells[i].source = reference.cells[j].source
    captures = {}
    if reference is not None:
        for k, ex in enumerate(expected[:len(solutions)]):
            captures[solutions[k][-1]] = (ex.number, _answer_names(reference, ex))
    lab_root_dir = workdir.parent
    extra = {"LABKIT_PROFILE": profile, "LABKIT_ROOT": str(lab_root_dir),
             "LABKIT_RESULTS_DIR": str(lab_root_dir / "results"), "MPLBACKEND": "Agg"}
    model = os.environ.get("LABKIT_MODEL", "")
    if model and Path(model).expanduser().is_dir():  # the kernel starts elsewhere: an absolute path
        extra["LABKIT_MODEL"] = str(Path(model).expanduser().resolve())
    env = sandbox.kernel_env(extra, home=lab_root_dir)
    kernel_log = lab_root_dir / f"kernel-{path.stem}.log"  # the kernel's own messages, not cells'
    attempt = _run_submission(nb, captures=captures, timeout=timeout, workdir=workdir, kernel=kernel,
                              env=env, mode=mode, readonly=readonly or [], kernel_log=kernel_log)
    if executed_path is not None:
        _write_notebook(nb, executed_path)

    outcomes: list[Outcome] = []
    in_exercise: set[int] = set()
    if reference is None:  # the submission's own checks
        mine = find_exercises(nb) if not mismatches else []
        for ex in mine:
            cells = ex.solution_cells + ex.check_cells
            in_exercise.update(cells)
            failed = next((i for i in cells if i in attempt.errors), None)
            if attempt.stopped and any(i not in attempt.durations for i in cells):
                passed, message = False, f"not run: {attempt.stopped}"
            elif not ex.check_cells:
                passed, message = False, f"no cell tagged `{CHECK_TAG}` checks this exercise"
            elif failed is not None:
                where = "your answer raised" if failed in ex.solution_cells else "check:"
                passed, message = False, f"{where} {attempt.errors[failed]}".replace("check: ✗ ", "✗ ")
            else:
                passed, message = True, _passed_lines(nb.cells[ex.check_cells[-1]]) or "passed"
            spent = sum(attempt.durations.get(i, 0.0) for i in cells)
            outcomes.append(Outcome(student, path.name, ex.label, passed, message, round(spent, 2)))
        checks_from = "submission (no reference: its own check cells)"
    else:
        pending: dict[int, dict] = {}
        verdict: dict[int, tuple[bool, str]] = {}
        for k, ex in enumerate(expected):
            if k >= len(solutions):
                verdict[ex.number] = (False, "missing from the submission (its `solution`/`check` cells "
                                             "or tags were removed)")
                continue
            cells = solutions[k]
            in_exercise.update(cells + checks[k])
            failed = next((i for i in cells if i in attempt.errors), None)
            got = attempt.answers.get(ex.number)
            if attempt.stopped and any(i not in attempt.durations for i in cells):
                verdict[ex.number] = (False, f"not run: {attempt.stopped}")
            elif failed is not None:
                verdict[ex.number] = (False, f"your answer raised {attempt.errors[failed]}")
            elif isinstance(got, str) or got is None:
                verdict[ex.number] = (False, got or f"not run: {attempt.stopped or 'no answer was captured'}")
            elif any(isinstance(v, dict) and "$code" in v for v in got.values()):
                # code (a function): checked by the reference's check cells in the submission's kernel
                if k not in aligned:
                    verdict[ex.number] = (False, "its answer is code, and the notebook's exercises differ "
                                                 "from the reference, so its checks cannot run")
                else:
                    bad = next((i for i in checks[k] if i in attempt.errors), None)
                    if bad is not None:
                        message = f"check: {attempt.errors[bad]}".replace("check: ✗ ", "✗ ")
                        verdict[ex.number] = (False, message)
                    elif any(i not in attempt.durations for i in checks[k]):
                        verdict[ex.number] = (False, f"not run: {attempt.stopped}")
                    else:
                        verdict[ex.number] = (True, (_passed_lines(nb.cells[checks[k][-1]]) or "passed")
                                              + " (code answer: checked in the submission's kernel)")
            else:
                pending[ex.number] = got
        if pending:
            own = checker is None
            if own:
                checker = _Checker(reference_path, timeout=timeout, kernel=kernel, env=env,
                                   workdir=workdir.parent.parent / ".reference" / "notebooks",
                                   log=lambda *a: None)
            try:
                verdict.update(checker.verdicts(pending))
            finally:
                if own:
                    checker.close()
        for ex in expected:
            passed, message = verdict[ex.number]
            k = ex.number - 1
            spent = sum(attempt.durations.get(i, 0.0) for i in solutions[k]) if k < len(solutions) else 0.0
            outcomes.append(Outcome(student, path.name, ex.label, passed, message, round(spent, 2)))
        checks_from = "reference (separate kernel)"
        if mismatches:
            outcomes.append(Outcome(student, path.name, "notebook matches the reference", False,
                                    "; ".join(mismatches)))
    other = [f"cell {i}: {attempt.errors[i]}" for i in sorted(attempt.errors) if i not in in_exercise]
    if attempt.stopped:
        other.append(attempt.stopped)
    if not outcomes:
        other.append("no exercises found (no cell tagged `solution`)")
    return NotebookRun(student, path.name, outcomes, round(attempt.seconds, 1), other, checks_from,
                       executed_path)


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
          kernel: str = "python3", log=print, sandbox: str | None = None) -> list[NotebookRun]:
    """Grade every notebook under `submissions`; write junit.xml, summary.csv, summary.md and
    the executed notebooks (executed/<student key>/) into `out`, after each notebook (atomically),
    so that a report exists for every notebook graded so far. Returns the runs.

    `reference` is the folder of instructor notebooks whose checks decide (default: the lab
    root's notebooks/ when it exists; "" to use the submitted checks, unprotected). `sandbox`
    ("auto", "bwrap" or "none"; default $LABKIT_GRADE_SANDBOX or "auto"): see labkit.sandbox."""
    from . import sandbox as sandboxes

    out = Path(out)
    lab = lab_root(root)
    pairs = find_submissions(Path(submissions))
    try:
        mode = sandboxes.choose(sandbox or os.environ.get("LABKIT_GRADE_SANDBOX") or "auto")
    except sandboxes.SandboxUnavailable as e:
        raise GradingError(str(e)) from None
    if mode == "bwrap":
        log("sandbox: bwrap (each student's kernel sees only its own work folder; no network)")
    else:
        why = f" ({sandboxes.bwrap_problem()})" if sandbox != "none" else ""
        log(f"sandbox: none: submissions run as this user, unisolated{why}; see README, For instructors")
    if reference is None:
        reference = lab / "notebooks" if (lab / "notebooks").is_dir() else ""
    ref_dir = Path(reference).resolve() if reference else None
    references = {p.name: p for p in sorted(ref_dir.glob("*.ipynb"))} if ref_dir else {}
    out.mkdir(parents=True, exist_ok=True)
    readonly = [(lab / "data").resolve()]
    model = os.environ.get("LABKIT_MODEL", "")
    if model and Path(model).expanduser().is_dir():  # another model to grade on, outside the lab
        readonly.append(Path(model).expanduser().resolve())

    jobs = []  # (reference name or submitted name, student, path, reference path, renamed note)
    for student, path in pairs:
        ref_name, renamed = None, ""
        if references:
            try:
                nb = nbformat.read(str(path), as_version=4)
            except Exception:
                nb = None
            ref_name, renamed = _match_reference(nb, path.name, references)
            if ref_name is None and nb is not None:
                renamed = "no reference notebook matches this notebook (renamed or not an exercise notebook)"
        ref_path = references.get(ref_name) if ref_name else None
        jobs.append((ref_name or path.name, student, path, ref_path, renamed))
    jobs.sort(key=lambda j: (j[0], j[1], str(j[2])))  # chapter by chapter: a student's in book order

    runs: list[NotebookRun] = []
    checker, checker_for = None, None
    try:
        for name, student, path, ref_path, renamed in jobs:
            if ref_path is not None and checker_for != ref_path:
                if checker is not None:
                    checker.close()
                log(f"starting the checks of {ref_path.name} ...")
                ref_box = _sandbox(out, ".reference", lab)
                env = {**os.environ, "LABKIT_PROFILE": profile, "LABKIT_ROOT": str(ref_box),
                       "LABKIT_RESULTS_DIR": str(ref_box / "results"), "MPLBACKEND": "Agg"}
                checker, checker_for = _Checker(ref_path, timeout=timeout, workdir=ref_box / "notebooks",
                                                kernel=kernel, env=env, log=log), ref_path
            box = _sandbox(out, student, lab)
            executed = out / "executed" / _key(student) / path.name
            log(f"grading {student}/{path.name} ({profile}) ...")
            try:
                run = grade_notebook(path, student, profile=profile, timeout=timeout,
                                     workdir=box / "notebooks", reference_path=ref_path, kernel=kernel,
                                     executed_path=executed,
                                     checker=checker if ref_path is not None else None, mode=mode,
                                     readonly=readonly, renamed=renamed)
            except Exception as e:  # whatever a submission did, it costs its own notebook only
                why = f"grading failed: {type(e).__name__}: {_first_line(e)}"
                labels = [ex.label for ex in checker.exercises] if ref_path is not None and checker else []
                failed = [Outcome(student, path.name, label, False, why) for label in labels]
                run = NotebookRun(student, path.name, failed, 0.0, [why], "reference (separate kernel)")
            if renamed and ref_path is None and not run.outcomes:
                run.outcomes.append(Outcome(student, path.name, "notebook matches the reference", False,
                                            renamed))
            ok = sum(o.passed for o in run.outcomes)
            log(f"  {ok}/{len(run.outcomes)} exercises pass in {run.seconds:.0f} s"
                + (f"; other errors: {'; '.join(run.other_errors)}" if run.other_errors else ""))
            runs.append(run)
            write_reports(runs, out, profile=profile, root=lab)
    finally:
        if checker is not None:
            checker.close()
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
