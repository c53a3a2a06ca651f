"""The grader against submissions that try to game it or harm others (issue 29).

One grading run of chapter 1 in `smoke` (`test_chapter_1_adversarial_class`) holds honest students
and one submission per attack: replacing the check functions, an extra check cell, a removed check
cell, a renamed notebook, reading another student's or the instructor's files, writing outside the
work folder, killing the parent, a background process, and two names that make the same folder
name. Each attack gets a failing verdict or is contained; every honest student keeps the right
verdict; the report lists every notebook. A notebook that ignores the interrupt has its own small
test (`test_a_kernel_that_ignores_the_interrupt_is_killed`), with a short cell timeout.

The isolation assertions need the `bwrap` sandbox (labkit.sandbox): the tests skip where bubblewrap
is not installed, and fail where it is installed but cannot run (CI installs it: .ci/run)."""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
from test_grading import code, exercise_notebook  # tests/ is on sys.path (conftest.py)

from labkit import grading, sandbox
from labkit.paths import ROOT

CHAPTER = "01_prompt_engineering.ipynb"
WRONG = {"my_prompt": "my_prompt = 'I do not know'", "extra_tokens": "extra_tokens = -1.0"}


def _need_bwrap():
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed: the isolation guarantees do not apply (mode `none`)")
    problem = sandbox.bwrap_problem()
    assert problem is None, f"bwrap is installed but cannot sandbox here: {problem}"


def _rows(out: Path):
    with open(out / "summary.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _exercise_only(nb, answers: dict[str, str] | None = None, prefix: list[str] = ()):
    """The chapter's exercise section only (cheap to run), each answer region replaced by
    `answers` (name -> line), with `prefix` code cells in front."""
    nb = copy.deepcopy(nb)
    exercises = grading.find_exercises(nb)
    first = min(i for ex in exercises for i in ex.solution_cells)
    while first > 0 and nb.cells[first - 1].cell_type == "markdown":
        first -= 1
    for ex in exercises:
        for i in ex.solution_cells:
            source = nb.cells[i].source
            if answers is not None:
                names = [n for n in answers if f"{n} =" in source]
                source = "\n".join(answers[n] for n in names)
            nb.cells[i].source = source
    nb.cells = [code(p) for p in prefix] + nb.cells[first:]
    return nb


def _digest(paths: list[Path]) -> dict[str, str]:
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.slow
def test_chapter_1_adversarial_class(tmp_path):
    _need_bwrap()
    instructor = nbformat.read(str(ROOT / "notebooks" / CHAPTER), as_version=4)
    subs, out = tmp_path / "submissions", tmp_path / "report"
    lab_files = [ROOT / "labkit" / "checks.py", ROOT / "labkit" / "answers.py", ROOT / "notebooks" / CHAPTER]
    spy = tmp_path / "spy.json"  # where a probe would leak to, if it could write outside its folder

    def submit(student, nb, name=CHAPTER):
        (subs / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(subs / student / name))

    # honest students (the full chapter), one of them sharing a folder name with a wrong one
    submit("z-honest", instructor)
    submit("ann lee", instructor)
    submit("ann_lee", _exercise_only(instructor, WRONG))
    # 1. the check functions replaced (and AssertionError, for good measure) in the answer cell
    fake = ("import builtins, labkit.checks\n"
            "labkit.checks.check = lambda name, *a, **k: print('✓ ' + name)\n"
            "labkit.checks.check_true = lambda name, *a, **k: print('✓ ' + name)\n"
            "builtins.AssertionError = type('Nothing', (Exception,), {})\n")
    submit("a-fake-checks", _exercise_only(instructor, {k: fake + v for k, v in WRONG.items()}))
    # 2. an extra cell tagged `check` that prints a pass line
    extra = _exercise_only(instructor, WRONG)
    first_check = next(i for i, c in enumerate(extra.cells) if "check" in c.metadata.get("tags", []))
    extra.cells.insert(first_check + 1, code("print('✓ 2-shot prompt')", "check"))
    submit("a-extra-check", extra)
    # 3. a check cell removed (its tag dropped, its code replaced), with right answers
    removed = copy.deepcopy(instructor)
    last_check = max(i for i, c in enumerate(removed.cells) if "check" in c.metadata.get("tags", []))
    removed.cells[last_check] = code("print('✓ extra prompt tokens')")
    submit("a-removed-check", removed)
    # 4. a renamed notebook with wrong answers
    submit("a-renamed", _exercise_only(instructor, WRONG), name="my_homework.ipynb")
    # 5. reading: the instructor edition (solutions), another student's work and executed notebook
    targets = {"reference": str(ROOT / "notebooks" / CHAPTER), "submissions": str(subs),
               "other work": str(out / "work" / grading._key("ann lee")),
               "other executed": str(out / "executed" / grading._key("ann lee") / CHAPTER),
               "report": str(out / "summary.csv"), "grader home": os.path.expanduser("~"),
               "root's private file": "/etc/shadow"}
    probe = ("import json, os\nseen = {}\n"
             f"for what, path in {targets!r}.items():\n"
             "    try:\n"
             "        isdir = os.path.isdir(path)\n"
             "        seen[what] = sorted(os.listdir(path))[:5] if isdir else open(path).read()[:80]\n"
             "    except OSError as e:\n"
             "        seen[what] = type(e).__name__\n"
             "json.dump(seen, open('seen.json', 'w'))\n")
    steal = {"my_prompt": f"my_prompt = open({targets['reference']!r}).read()",
             "extra_tokens": "extra_tokens = -1.0"}
    submit("b-reader", _exercise_only(instructor, steal, prefix=[probe]))
    # 6. writing outside its folder: the lab's code, a later student's submission, the report, a spy file
    writes = [str(ROOT / "labkit" / "checks.py"), str(subs / "z-honest" / CHAPTER), str(out / "summary.csv"),
              str(spy), str(ROOT / "notebooks" / CHAPTER)]
    vandal = ("import json\nresult = {}\n"
              f"for path in {writes!r}:\n"
              "    try:\n"
              "        open(path, 'a').write('sabotaged')\n"
              "        result[path] = 'written'\n"
              "    except OSError as e:\n"
              "        result[path] = type(e).__name__\n"
              "json.dump(result, open('writes.json', 'w'))\n"
              "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=3); net = 'open'\n"
              "except OSError as e:\n    net = type(e).__name__\nopen('net.txt', 'w').write(net)\n")
    submit("b-writer", _exercise_only(instructor, WRONG, prefix=[vandal]))
    # 7. killing the parent (and everything it can see), 8. a background process that outlives the kernel
    submit("c-killer", _exercise_only(instructor, WRONG, prefix=[
        "import os, signal\nfor pid in (os.getppid(), 1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError:\n        pass\nos.killpg(0, signal.SIGKILL)"]))
    submit("c-background", _exercise_only(instructor, WRONG, prefix=[
        "import subprocess\nsubprocess.Popen(['sleep', '987654'], start_new_session=True)\n"
        "subprocess.Popen(['sh', '-c', 'while true; do date > beat.txt; sleep 0.2; done'],\n"
        "                 start_new_session=True)"]))

    before = _digest([subs / "z-honest"])
    started = time.perf_counter()
    runs = grading.grade(subs, out, profile="smoke", root=ROOT, timeout=300, sandbox="bwrap")
    print(f"graded {len(runs)} notebooks in {time.perf_counter() - started:.0f} s")
    print((out / "summary.md").read_text())

    rows = _rows(out)
    verdict = {(r["student"], r["exercise"]): (r["result"], r["message"]) for r in rows}
    students = {r["student"] for r in rows}
    assert students == {p.name for p in subs.iterdir()}, "the report lists every student"
    labels = [ex.label for ex in grading.find_exercises(instructor)]
    for honest in ("z-honest", "ann lee"):
        assert [verdict[honest, e][0] for e in labels] == ["pass"] * len(labels), honest
        assert (honest, "notebook matches the reference") not in verdict
    for attacker in ("ann_lee", "a-fake-checks", "a-extra-check", "a-renamed", "b-reader", "b-writer",
                     "c-killer", "c-background"):
        assert [verdict[attacker, e][0] for e in labels] == ["fail"] * len(labels), attacker
    for wrong in ("ann_lee", "a-fake-checks", "a-extra-check", "a-renamed"):  # the reference's check said no
        assert verdict[wrong, labels[0]][1].startswith("✗ 2-shot prompt: got 'I do not know'"), wrong
    assert verdict["a-fake-checks", labels[1]][1].startswith("✗ extra prompt tokens: got -1.0")
    for mismatched, why in (("a-extra-check", "exercise 1: 2 `check` cell(s), the reference has 1"),
                            ("a-removed-check", "exercise 2: 0 `check` cell(s), the reference has 1"),
                            ("a-renamed", "graded as 01_prompt_engineering.ipynb")):
        result, message = verdict[mismatched, "notebook matches the reference"]
        assert result == "fail" and why in message, (mismatched, message)
    assert "FileNotFoundError" in verdict["b-reader", labels[0]][1]
    assert verdict["c-killer", labels[0]][1].startswith("not run: the kernel died")

    # containment: nothing outside the work folders changed, nothing was seen, nothing survives
    assert _digest([subs / "z-honest"]) == before
    for path in lab_files:  # (other edits to the lab while this runs are not the submission's)
        assert not path.read_text(encoding="utf-8").endswith("sabotaged"), path
    assert not spy.exists()
    box = lambda s: out / "work" / grading._key(s)  # noqa: E731
    seen = json.loads((box("b-reader") / "notebooks" / "seen.json").read_text())
    assert seen.pop("root's private file") in ("PermissionError", "FileNotFoundError")
    home = seen.pop("grader home")  # only the way to Python itself (bound read-only), when it lives there
    python_parts = [Path(d).resolve().parts for d in (sys.base_prefix, sys.prefix)]
    home_parts = Path(os.path.expanduser("~")).resolve().parts
    assert home == "FileNotFoundError" or all(
        any(p[:len(home_parts) + 1] == (*home_parts, entry) for p in python_parts) for entry in home), home
    assert all(v == "FileNotFoundError" for v in seen.values()), seen
    written = json.loads((box("b-writer") / "notebooks" / "writes.json").read_text())
    assert all(v in ("FileNotFoundError", "OSError", "PermissionError") for v in written.values()), written
    assert (box("b-writer") / "notebooks" / "net.txt").read_text() == "OSError"  # network unreachable
    assert box("ann lee") != box("ann_lee") and box("ann lee").is_dir() and box("ann_lee").is_dir()
    beat = box("c-background") / "notebooks" / "beat.txt"
    assert beat.exists()
    last = beat.stat().st_mtime
    time.sleep(1.0)
    assert beat.stat().st_mtime == last, "a background process outlived its kernel"
    import psutil
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "987654"]]


def test_a_kernel_that_ignores_the_interrupt_is_killed(tmp_path, monkeypatch):
    """A cell that ignores SIGINT past its timeout: the kernel is killed after a short grace,
    the notebook's remaining cells are reported as not run, and the next student is graded."""
    _need_bwrap()
    # a 3 s grace instead of the grader's 10: the same path (the probe after the interrupt times
    # out, the kernel is killed), 7 s less of waiting
    monkeypatch.setattr(grading, "GRACE_SECONDS", 3)
    reference = tmp_path / "reference"
    reference.mkdir()
    nbformat.write(exercise_notebook(), str(reference / "tiny.ipynb"))
    subs = tmp_path / "subs"
    stubborn = exercise_notebook()
    stubborn.cells[1].source += ("\nimport signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                 "time.sleep(10000)")
    for student, nb in (("a-stubborn", stubborn), ("b-honest", exercise_notebook())):
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, str(subs / student / "tiny.ipynb"))
    started = time.perf_counter()
    runs = grading.grade(subs, tmp_path / "out", profile="smoke", root=ROOT, reference=reference,
                         timeout=3, sandbox="bwrap", log=lambda *a: None)
    spent = time.perf_counter() - started
    stubborn_run, honest_run = runs
    assert all(not o.passed and o.message.startswith("not run: cell 1 ran past 3 s and ignored the interrupt")
               for o in stubborn_run.outcomes), stubborn_run.outcomes
    assert stubborn_run.seconds < 3 + grading.GRACE_SECONDS + 15
    assert [o.passed for o in honest_run.outcomes] == [True, True, True]
    assert spent < 120


def test_without_a_sandbox_verdicts_still_come_from_the_reference(tmp_path):
    """Mode `none` (no bwrap): no file isolation, but a submission that replaces the check
    functions still fails, an honest one passes, and a background process in the kernel's
    process group dies with it."""
    reference = tmp_path / "reference"
    reference.mkdir()
    nbformat.write(exercise_notebook(), str(reference / "tiny.ipynb"))
    cheat = exercise_notebook()
    cheat.cells[3].source = ("import labkit.checks\n"
                             "labkit.checks.check = lambda name, *a, **k: print('✓ ' + name)\n"
                             "answer = -5\nimport subprocess\nsubprocess.Popen(['sleep', '987653'])")
    subs = tmp_path / "subs"
    for student, nb in (("cheat", cheat), ("honest", exercise_notebook())):
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, str(subs / student / "tiny.ipynb"))
    runs = grading.grade(subs, tmp_path / "out", profile="smoke", root=ROOT, reference=reference,
                         timeout=30, sandbox="none", log=lambda *a: None)
    cheat_run, honest_run = runs
    assert cheat_run.outcomes[0].message == "✗ double: got -5, expected 6."
    assert [o.passed for o in cheat_run.outcomes] == [False, True, True]
    assert [o.passed for o in honest_run.outcomes] == [True, True, True]
    import psutil
    time.sleep(0.5)
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "987653"]]


def test_sandbox_modes(tmp_path, monkeypatch, capsys):
    """`bwrap` where it cannot work stops grading before any run (exit 2, saying why); `auto`
    falls back to `none` and says so in the log."""
    from labkit.__main__ import main

    (tmp_path / "subs").mkdir()
    nbformat.write(exercise_notebook(), str(tmp_path / "subs" / "tiny.ipynb"))
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap is not installed (test)")
    assert sandbox.choose("auto") == "none" and sandbox.choose("none") == "none"
    with pytest.raises(sandbox.SandboxUnavailable, match="not installed"):
        sandbox.choose("bwrap")
    monkeypatch.setenv("LABKIT_GRADE_SANDBOX", "bwrap")
    args = ["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--lab-root", str(ROOT)]
    assert main(args) == 2
    assert "--sandbox bwrap: bubblewrap is not installed (test)" in capsys.readouterr().err
    assert not (tmp_path / "out" / "summary.csv").exists()
