"""Student editions and the grader (labkit.grading, `python -m labkit student | grade`).

The fast tests use small synthetic notebooks. `test_real_notebook_*` (marked slow; `make test`
runs it) grades, for each chapter in notebooks/, its student edition, its instructor edition and
an edition with a plausible wrong answer per exercise: one smoke run of the notebook per edition."""
from __future__ import annotations

import copy
import csv
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit import grading
from labkit.__main__ import main
from labkit.checks import check
from labkit.paths import ROOT

NOTEBOOKS = ROOT / "notebooks"


def code(source, *tags):
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def exercise_notebook() -> nbformat.NotebookNode:
    """Three exercises: a top-level answer between markers (with a given line outside them), an
    answer inside a function, and a two-value answer; plus a cell that fails outside them."""
    nb = new_notebook(cells=[
        new_markdown_cell("# A tiny chapter"),
        code("x = 3\nprint('setup done')"),
        new_markdown_cell("## Exercises\n\n**1. Double it.** Store twice `x` in `answer`."),
        code("given = 10\n### BEGIN SOLUTION\nanswer = x * 2\n### END SOLUTION\nprint(given)", "solution"),
        code("from labkit.checks import check\n\ncheck('double', answer, 2 * x)", "check"),
        new_markdown_cell("**2. Triple.** Write `triple(v)`."),
        code("def triple(v):\n    ### BEGIN SOLUTION\n    return 3 * v\n    ### END SOLUTION", "solution"),
        code("check('triple', triple(5), 15)", "check"),
        new_markdown_cell("**3. Both.** Store `x + 1` and `x - 1`."),
        code("### BEGIN SOLUTION\nup, down = x + 1, x - 1\n### END SOLUTION", "solution"),
        code("check('up and down', (up, down), (x + 1, x - 1))", "check"),
        code("print('the end')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def legacy_notebook() -> nbformat.NotebookNode:
    """The older form (notebooks 00-03 before the markers): a whole cell tagged `solution`, an
    untagged check cell."""
    return new_notebook(cells=[
        code("y = 4"),
        code("half = y / 2", "solution"),
        code("from labkit.checks import check\ncheck('half', half, y / 2)  # activation_checkpointing=False"),
        code("half2 = half"),
    ])


# ---- reading and stubbing ------------------------------------------------------------------

def test_find_exercises_in_tagged_and_legacy_notebooks():
    exercises = grading.find_exercises(exercise_notebook())
    assert [(e.number, e.title, e.solution_cells, e.check_cells) for e in exercises] == [
        (1, "Double it", [3], [4]), (2, "Triple", [6], [7]), (3, "Both", [9], [10])]
    legacy = grading.find_exercises(legacy_notebook())
    assert [(e.number, e.title, e.solution_cells, e.check_cells) for e in legacy] == [(1, "half", [1], [2])]


def test_solution_regions():
    assert grading.solution_regions("a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nc") == [(1, 3)]
    assert grading.solution_regions("a = 1\nb = 2") == [(0, 1)]  # no markers: the whole cell
    for bad, line in [("### BEGIN SOLUTION\nb = 2", 1), ("b = 2\n### END SOLUTION", 2),
                      ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", 2)]:
        with pytest.raises(grading.GradingError, match=f"line {line}"):
            grading.solution_regions(bad)


def test_student_edition_stubs_answers_clears_outputs_keeps_checks():
    nb = exercise_notebook()
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="setup done\n")]
    nb.cells[1].execution_count = 1
    student = grading.student_edition(nb, "tiny.ipynb")
    sources = [c.source for c in student.cells]
    assert sources[3] == ("given = 10\n# Exercise 1: write your answer here.\n"
                          "answer = ...  # your answer\nprint(given)")
    assert sources[6] == ('def triple(v):\n    # Exercise 2: write your answer here.\n'
                          '    raise NotImplementedError("Exercise 2: write your answer here")')
    assert "up = ...  # your answer\ndown = ...  # your answer" in sources[9]
    for i in (3, 6, 9):
        assert "BEGIN SOLUTION" not in sources[i] and "x * 2" not in sources[i] and "3 * v" not in sources[i]
    for i in (4, 7, 10, 11):  # checks and ordinary cells unchanged
        assert student.cells[i].source == nb.cells[i].source
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in student.cells if c.cell_type == "code")
    assert student.metadata["labkit"]["edition"] == "student"
    assert nb.cells[3].source.count("x * 2") == 1  # the instructor notebook is not modified


def test_student_edition_refuses_an_exercise_without_a_check():
    nb = exercise_notebook()
    del nb.cells[4].metadata["tags"]
    with pytest.raises(grading.GradingError, match="exercise 1 .*no cell tagged `check`"):
        grading.student_edition(nb, "tiny.ipynb")


def test_a_stub_is_no_answer_yet_even_inside_a_tuple():
    with pytest.raises(AssertionError, match="no answer yet"):
        check("pair", (..., ...), (1, 2))
    with pytest.raises(AssertionError, match="no answer yet"):
        check("pair", (1, ...), (1, 2))
    with pytest.raises(AssertionError, match="got"):
        check("pair", (1, None), (1, 2))


def test_student_command_writes_editions(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    nbformat.write(exercise_notebook(), str(src / "10_tiny.ipynb"))
    assert main(["student", str(tmp_path / "out"), "--notebooks", str(src)]) == 0
    student = nbformat.read(str(tmp_path / "out" / "10_tiny.ipynb"), as_version=4)
    assert "answer = ..." in student.cells[3].source


# ---- grading -------------------------------------------------------------------------------

def test_lab_root_names_what_is_missing(tmp_path):
    with pytest.raises(grading.GradingError, match="--lab-root"):
        grading.lab_root(tmp_path)
    assert grading.lab_root(ROOT) == ROOT.resolve()


def _read_report(out: Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == grading.CSV_COLUMNS
    return {(r["student"], r["notebook"], r["exercise"]): (r["result"], r["message"]) for r in rows}


def test_grade_reports_every_exercise(tmp_path):
    """One grading run over three students: the instructor edition passes, the student edition
    fails every exercise with the checks' own message, wrong answers fail (also past an error
    earlier in the notebook, a hanging cell and an edited check cell, which the reference restores)."""
    reference = tmp_path / "reference"
    reference.mkdir()
    nb = exercise_notebook()
    nbformat.write(nb, str(reference / "tiny.ipynb"))
    subs = tmp_path / "submissions"
    for student in ("alice", "bob", "carol", "dave", "erin"):
        (subs / student).mkdir(parents=True)
    (subs / "dave" / "tiny.ipynb").write_text("{not json")                # unreadable
    erin = exercise_notebook()
    for i in (9, 10):                                                      # exercise 3 untagged
        del erin.cells[i].metadata["tags"]
    nbformat.write(erin, str(subs / "erin" / "tiny.ipynb"))
    nbformat.write(nb, str(subs / "alice" / "tiny.ipynb"))
    nbformat.write(grading.student_edition(nb), str(subs / "bob" / "tiny.ipynb"))
    wrong = exercise_notebook()
    wrong.cells[1].source += "\n1 / 0"                                     # an error outside exercises
    wrong.cells[3].source = wrong.cells[3].source.replace("x * 2", "x * 2 + 1")  # off-by-one
    wrong.cells[4].source = "print('✓ double')"                            # a check edited to pass
    wrong.cells[6].source = "import time\ntime.sleep(60)"                  # a cell that hangs
    wrong.cells[9].source = wrong.cells[9].source.replace("x - 1", "(x - 1) * 10")  # wrong scale
    nbformat.write(wrong, str(subs / "carol" / "tiny.ipynb"))

    out = tmp_path / "report"
    rc = main(["grade", str(subs), "--profile", "smoke", "--out", str(out), "--timeout", "5",
               "--reference", str(reference), "--lab-root", str(ROOT)])
    assert rc == 1  # some exercises fail
    report = _read_report(out)
    assert len(report) == 16  # 15 exercises, and erin's notebook does not match the reference
    labels = ["1. Double it", "2. Triple", "3. Both"]
    assert [report["alice", "tiny.ipynb", e][0] for e in labels] == ["pass"] * 3
    assert report["alice", "tiny.ipynb", "1. Double it"][1] == "✓ double"
    bob = [report["bob", "tiny.ipynb", e] for e in labels]
    assert [r for r, _ in bob] == ["fail"] * 3
    assert "no answer yet" in bob[0][1] and "no answer yet" in bob[2][1]
    assert "NotImplementedError: Exercise 2" in bob[1][1]
    carol = [report["carol", "tiny.ipynb", e] for e in labels]
    assert [r for r, _ in carol] == ["fail"] * 3
    assert carol[0][1] == "✗ double: got 7, expected 6."      # the reference's check ran, not the edit
    assert "your answer raised Timeout" in carol[1][1]
    assert carol[2][1].startswith("✗ up and down: got (4, 20)")

    assert [report["dave", "tiny.ipynb", e][0] for e in labels] == ["fail"] * 3
    assert report["dave", "tiny.ipynb", "1. Double it"][1].startswith("cannot read the notebook")
    assert [report["erin", "tiny.ipynb", e][0] for e in labels] == ["pass", "pass", "fail"]
    assert report["erin", "tiny.ipynb", "3. Both"][1].startswith("missing from the submission")
    assert report["erin", "tiny.ipynb", "notebook matches the reference"] == (
        "fail", "2 exercise(s) tagged `solution`, the reference has 3")

    suites = ET.parse(out / "junit.xml").getroot()
    # 16 rows, and a failing `notebook runs` case for carol (1 / 0) and dave (unreadable)
    assert suites.get("tests") == "18" and suites.get("failures") == "13"
    carol_suite = next(s for s in suites if s.get("name") == "carol/tiny.ipynb")
    notebook_case = next(c for c in carol_suite if c.get("name") == "notebook runs")
    assert "ZeroDivisionError" in notebook_case.find("failure").get("message")
    markdown = (out / "summary.md").read_text()
    assert "16 exercise(s): **5 pass, 11 fail**" in markdown
    assert (out / "executed" / grading._key("bob") / "tiny.ipynb").exists()
    assert not list((tmp_path / "submissions").rglob("results"))  # runs write under the report folder


def test_grade_legacy_notebook_and_missing_folder(tmp_path, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(legacy_notebook(), str(subs / "legacy.ipynb"))
    student = grading.student_edition(legacy_notebook())
    assert student.cells[1].source.endswith("half = ...  # your answer")
    runs = grading.grade(subs, tmp_path / "out", reference="", root=ROOT, log=lambda *a: None)
    assert [(o.student, o.exercise, o.passed, o.message) for o in runs[0].outcomes] == [
        ("-", "1. half", True, "✓ half")]
    assert main(["grade", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "submissions folder not found" in capsys.readouterr().err


# ---- the real notebooks --------------------------------------------------------------------

# A plausible wrong answer per exercise of the chapters: (text in the answer, replacement).
# An exercise without an entry gets a generic off-by-one of its answer (see `_wrong_edition`).
WRONG_ANSWERS: dict[tuple[str, int], tuple[str, str]] = {
    ("00_base_model", 1): ("health_tpw = len(tokenizer.tokenize(health)) / len(health.split())",
                           "health_tpw = len(tokenizer.tokenize(health)) / len(health)"),  # per character
    ("00_base_model", 2): ("logits[0, :-1], ids[0, 1:]", "logits[0, 1:], ids[0, 1:]"),  # unshifted
    ("01_prompt_engineering", 1): ('example["demos"][:2]', 'example["demos"][:3]'),     # one shot too many
    # forgot the baseline
    ("01_prompt_engineering", 2): ('- by_name["0-shot"]["metrics"]["prompt_tokens"]', ""),
    ("02_prompt_tuning", 1): ("profile.virtual_tokens * base.config.hidden_size",
                              "(profile.virtual_tokens + 1) * base.config.hidden_size"),  # off by one
    ("02_prompt_tuning", 2): ("num_hidden_layers * 2 * cfg.num_key_value_heads",
                              "num_hidden_layers * cfg.num_key_value_heads"),          # keys only
    ("03_lora", 1): ("((cfg.hidden_size + q_out) + (cfg.hidden_size + v_out))",
                     "(cfg.hidden_size + q_out)"),                                     # one projection
    ("03_lora", 2): ("(lora_cfg.lora_alpha / lora_cfg.r) * B0 @ A0", "B0 @ A0"),       # no alpha / r
    # in smoke every held-out family scores 0 before and after, so "forgot the baseline" would pass:
    # a family short
    ("05_instruction_tuning", 2): ("for f in held_out_families}", "for f in held_out_families[:-1]}"),
    # the baseline includes the reply itself
    ("06_rlhf", 2): ("torch.cat([group[:i], group[i + 1:]]).mean()", "group.mean()"),
    # the wrong role
    ("10_real_model", 2): ('{"role": "assistant", "content": str(a)}', '{"role": "user", "content": str(a)}'),
    # T inverted
    ("08_distillation", 2): ("torch.softmax(logits / T, dim=-1)", "torch.softmax(logits * T, dim=-1)"),
}

# A chapter that starts from another chapter's saved model: the grader runs the prerequisite's
# instructor edition first, in the same student's work folder (chapter 6 needs chapter 5's SFT policy).
PREREQUISITES = {"06_rlhf": ["05_instruction_tuning"]}


def _wrong_edition(nb, stem: str) -> tuple[nbformat.NotebookNode, list[str]]:
    """The instructor notebook with one plausible wrong answer per exercise; notes on how."""
    nb = copy.deepcopy(nb)
    notes = []
    for ex in grading.find_exercises(nb):
        key = (stem, ex.number)
        if key in WRONG_ANSWERS:
            old, new = WRONG_ANSWERS[key]
            cell = next((nb.cells[i] for i in ex.solution_cells if old in nb.cells[i].source), None)
            assert cell is not None, (f"{stem} exercise {ex.number}: its answer no longer contains "
                                      f"{old!r}; update WRONG_ANSWERS in tests/test_grading.py")
            cell.source = cell.source.replace(old, new)
            notes.append(f"{stem} {ex.number}: {old!r} -> {new!r}")
            continue
        last = nb.cells[ex.solution_cells[-1]]
        first, end = grading.solution_regions(last.source)[-1]
        checks = [nb.cells[i].source for i in ex.check_cells]
        read = grading._loaded_names(checks) or set()
        names = [n for n in grading._assigned_names(last.source, first, end) if n in read]
        assert names, f"{stem} exercise {ex.number}: add a wrong answer to WRONG_ANSWERS"
        name = names[-1]
        last.source += f"\n{name} = {name} + 1  # injected off-by-one"
        notes.append(f"{stem} {ex.number}: generic {name} + 1")
    return nb, notes


# Each chapter costs one grading run of three submissions (student, instructor, wrong answers).
# CI grades one chapter end to end (its exercises: a prompt string and a token count) to stay
# inside its time budget; LABKIT_GRADE_ALL=1 grades every chapter (the pre-release check).
GRADED_IN_CI = ("01_prompt_engineering",)


def _graded_chapters():
    every = sorted(NOTEBOOKS.glob("*.ipynb"))
    if os.environ.get("LABKIT_GRADE_ALL") == "1":
        return every
    return [p for p in every if p.stem in GRADED_IN_CI]


@pytest.mark.slow
@pytest.mark.parametrize("source", _graded_chapters(), ids=lambda p: p.stem)
def test_real_notebook_student_instructor_and_wrong_editions(source, tmp_path):
    """One grading run of three submissions of a chapter: its student edition (every exercise
    fails), its instructor edition (every exercise passes) and a plausible wrong answer per
    exercise (every exercise fails, and the failure is the check's ✗, not an exception)."""
    instructor = nbformat.read(str(source), as_version=4)
    n = len(grading.find_exercises(instructor))
    assert 1 <= n <= 3, f"{source.name}: {n} exercises; a chapter has one to three"
    subs = tmp_path / "submissions"
    for student in ("instructor-edition", "student-edition", "wrong-answers"):
        (subs / student).mkdir(parents=True)
        for stem in PREREQUISITES.get(source.stem, []):
            shutil.copy(NOTEBOOKS / f"{stem}.ipynb", subs / student / f"{stem}.ipynb")
    shutil.copy(source, subs / "instructor-edition" / source.name)
    nbformat.write(grading.student_edition(instructor, source.name),
                   str(subs / "student-edition" / source.name))
    wrong, notes = _wrong_edition(instructor, source.stem)
    nbformat.write(wrong, str(subs / "wrong-answers" / source.name))
    out = tmp_path / "report"
    # A smoke cell takes seconds. The default cell timeout (900 s) once let a kernel reply that
    # never came stall this test for 15 minutes before the cell was interrupted; 300 s bounds it.
    runs = grading.grade(subs, out, profile="smoke", root=ROOT, timeout=300)
    print("\n" + "\n".join(notes))
    print((out / "summary.md").read_text())
    report = _read_report(out)
    for student in ("student-edition", "instructor-edition", "wrong-answers"):
        rows = {k[2]: v for k, v in report.items() if k[:2] == (student, source.name)}
        assert len(rows) == n, f"{student}: {len(rows)} exercises reported, {n} expected"
        results = [r for r, _ in rows.values()]
        if student == "instructor-edition":
            assert results == ["pass"] * n, rows
        else:
            assert results == ["fail"] * n, f"{student}: {rows}"
        if student == "wrong-answers":  # the check bit, not an exception in the answer
            assert all(m.startswith("✗ ") for _, m in rows.values()), rows
        if student == "student-edition":
            assert not any(m.startswith("not run") for _, m in rows.values()), rows
    run = next(r for r in runs if r.student == "instructor-edition" and r.notebook == source.name)
    assert not run.other_errors and run.checks_from == "reference (separate kernel)", run.other_errors


def test_a_code_answer_is_checked_and_the_executed_notebook_is_the_submission(tmp_path):
    """An answer that is code (a function) is checked by the reference's check cells in the
    submission's kernel: a wrong function fails there. The grader's own cells (answer capture,
    probes) never replace a cell of the executed notebook (they once overwrote the last but one,
    here the check of the code answer, which then "passed" without running)."""
    nb = exercise_notebook()
    del nb.cells[8:11]  # exercise 3 gone: the code answer's check is the last cell but one
    reference = tmp_path / "reference"
    reference.mkdir()
    nbformat.write(nb, str(reference / "tiny.ipynb"))
    wrong = copy.deepcopy(nb)
    wrong.cells[6].source = wrong.cells[6].source.replace("3 * v", "3 * v + 1")
    subs = tmp_path / "subs"
    for student, submitted in (("honest", nb), ("wrong", wrong)):
        (subs / student).mkdir(parents=True)
        nbformat.write(submitted, str(subs / student / "tiny.ipynb"))
    out = tmp_path / "out"
    honest, bad = grading.grade(subs, out, root=ROOT, reference=reference, timeout=60, log=lambda *a: None)
    assert [(o.passed, o.message) for o in honest.outcomes] == [
        (True, "✓ double"), (True, "✓ triple (code answer: checked in the submission's kernel)")]
    assert [o.passed for o in bad.outcomes] == [True, False]
    assert bad.outcomes[1].message == "✗ triple: got 16, expected 15."
    executed = nbformat.read(str(out / "executed" / grading._key("honest") / "tiny.ipynb"), as_version=4)
    assert [c.source for c in executed.cells] == [c.source for c in nb.cells]
    assert executed.cells[-1].outputs[0]["text"] == "the end\n"
