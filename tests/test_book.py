"""`make book` never reports success with a chapter missing: a failed notebook runs again next build."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "book" / "check_build.py"
BIN = Path(sys.executable).parent

CHAPTER = """import os, pathlib
with open('../runs.txt', 'a') as f:
    f.write('run\\n')                     # count executions
assert not os.path.exists('../FAIL'), 'told to fail'
pathlib.Path('../results/smoke').mkdir(parents=True, exist_ok=True)
pathlib.Path('../results/smoke/01_x.json').write_text('{}')
"""


def _tiny_book(root: Path) -> None:
    (root / "notebooks").mkdir(parents=True)
    (root / "_config.yml").write_text("title: tiny\nonly_build_toc_files: true\n"
                                      "execute:\n  execute_notebooks: cache\n  timeout: 120\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: notebooks/01_x\n")
    (root / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Chapter"),
                                         nbformat.v4.new_code_cell(CHAPTER)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "notebooks" / "01_x.ipynb")


def _make_book(root: Path) -> subprocess.CompletedProcess:
    """The `book` recipe of the Makefile, on the tiny book (see test_makefile_runs_the_check)."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "LABKIT_PROFILE": "smoke"}
    script = (f"{sys.executable} {CHECK} --root . --before; "
              f"{BIN / 'jupyter-book'} build . -W --keep-going > build.log 2>&1; rc=$?; "
              f"{sys.executable} {CHECK} --root . || rc=1; exit $rc")
    return subprocess.run(["bash", "-c", script], cwd=root, env=env, capture_output=True, text=True,
                          timeout=1800)


def test_makefile_runs_the_check_before_and_after_the_build():
    recipe = re.search(r"^book:.*?(?=^\S)", (ROOT / "Makefile").read_text(), re.S | re.M).group(0)
    before = recipe.index("book/check_build.py --before")
    build = recipe.index("jupyter-book build")
    after = recipe.index("book/check_build.py || rc=1")
    assert before < build < after
    assert "exit 1" in recipe[after:]


@pytest.mark.skipif(shutil.which("jupyter-book", path=str(BIN)) is None, reason="jupyter-book not installed")
def test_a_failed_notebook_runs_again_and_fails_the_build_until_it_passes(tmp_path):
    """The issue's case: build 1 fails (a notebook error); before the fix, build 2 exited 0 in
    seconds with the page empty and no results file, since Sphinx did not re-read the page."""
    _tiny_book(tmp_path)
    (tmp_path / "FAIL").touch()
    first = _make_book(tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "notebooks/01_x.ipynb: no successful execution" in first.stdout
    assert "told to fail" in first.stdout and "no results file results/smoke/01_x.json" in first.stdout

    second = _make_book(tmp_path)
    assert second.returncode == 1, second.stdout
    assert (tmp_path / "runs.txt").read_text().count("run") == 2  # executed again, not skipped

    (tmp_path / "FAIL").unlink()
    third = _make_book(tmp_path)
    assert third.returncode == 0, third.stdout + (tmp_path / "build.log").read_text()[-3000:]
    assert "all 1 notebooks of the book executed" in third.stdout
    assert (tmp_path / "runs.txt").read_text().count("run") == 3
    assert (tmp_path / "results" / "smoke" / "01_x.json").exists()

    fourth = _make_book(tmp_path)  # passed once: served from the cache, not executed again
    assert fourth.returncode == 0 and (tmp_path / "runs.txt").read_text().count("run") == 3


def test_a_missing_results_file_fails_the_check_even_with_a_cached_run(tmp_path):
    """A chapter whose results file was deleted (or never written) is reported, its page is marked
    for re-reading, and its cached run is dropped (else myst-nb would reload it and never run it)."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    _tiny_book(tmp_path)
    path = tmp_path / "notebooks" / "01_x.ipynb"
    cache = get_cache(str(tmp_path / "_build" / ".jupyter_cache"))
    record = cache.add_nb_to_project(str(path))
    cache.cache_notebook_bundle(CacheBundleIn(nbformat.read(path, as_version=4), record.uri),
                                check_validity=False)
    doctree = tmp_path / "_build" / ".doctrees" / "notebooks" / "01_x.doctree"
    doctree.parent.mkdir(parents=True)
    doctree.touch()
    run = subprocess.run([sys.executable, str(CHECK), "--root", str(tmp_path), "--profile", "smoke"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "no results file results/smoke/01_x.json" in run.stdout
    assert "no successful execution" not in run.stdout
    assert not doctree.exists()
    with pytest.raises(KeyError):
        cache.match_cache_notebook(nbformat.read(path, as_version=4))


def test_a_deleted_results_file_runs_its_cached_notebook_again(tmp_path):
    """The case found in a cpu book: a chapter ran and was cached, then its results file was deleted.
    Before the fix every later build reloaded it from the cache and failed the check, for ever."""
    _tiny_book(tmp_path)
    first = _make_book(tmp_path)
    assert first.returncode == 0, first.stdout + (tmp_path / "build.log").read_text()[-3000:]
    (tmp_path / "results" / "smoke" / "01_x.json").unlink()
    second = _make_book(tmp_path)
    assert (tmp_path / "runs.txt").read_text().count("run") == 2, second.stdout  # executed again
    assert second.returncode == 0, second.stdout + (tmp_path / "build.log").read_text()[-3000:]
    assert (tmp_path / "results" / "smoke" / "01_x.json").exists()


def test_a_chapter_that_skipped_itself_needs_no_results_file(tmp_path):
    """Chapter 10 skips itself (labkit.runtime.skip_rest_of_notebook) when its real model can't be
    built: it ran without error and says why, so the book is complete without its results."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    _tiny_book(tmp_path)
    path = tmp_path / "notebooks" / "01_x.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = "skip_rest_of_notebook('This chapter is skipped: no model')"
    nbformat.write(nb, path)
    cache = get_cache(str(tmp_path / "_build" / ".jupyter_cache"))
    record = cache.add_nb_to_project(str(path))
    executed = nbformat.read(path, as_version=4)
    executed.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                        text="This chapter is skipped: no model\n")]
    cache.cache_notebook_bundle(CacheBundleIn(executed, record.uri), check_validity=False)
    run = subprocess.run([sys.executable, str(CHECK), "--root", str(tmp_path), "--profile", "smoke"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    assert "ran and skipped itself: This chapter is skipped: no model" in run.stdout
