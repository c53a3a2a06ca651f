"""The summary page is never stale: `make book` runs `python -m labkit.summary refresh` before
and after `jupyter-book build` (see the Makefile's `book` target), which makes the summary
execute again when a results file changed. Here on a one-page book, built twice (about a
minute): change one results file, rebuild, and the page shows the new value."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labkit import summary

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

NOTEBOOK = """\
import json
from labkit import summary
from labkit.results import Results
docs = summary.book_results("smoke")
table = summary.measured_table(docs)
print("LORA_MEMORY", table.set_index("chapter").loc["03_lora", "peak_memory_mb"])
r = Results("11_summary", "Summary", "smoke")
r.add_run({"name": "s", "method": "summary", "base_model": "none", "trainable_params": 0, "total_params": 1,
           "train_examples": 0, "wall_time_s": 0.0, "peak_memory_mb": 0.0, "memory_kind": "none",
           "metrics": {}})
summary.write_summary_results(r)
"""


def _lora_doc(memory):
    return {"schema_version": 1, "chapter": "03_lora", "method": "LoRA / PEFT", "profile": "smoke",
            "environment": {"device": "cpu", "device_name": "cpu", "torch": "2", "transformers": "5",
                            "python": "3.11", "timestamp": "2026-12-07T00:00:00+00:00"},
            "runs": [{"name": "lora legal", "method": "lora", "base_model": "labworld-base",
                      "trainable_params": 10, "total_params": 1000, "train_examples": 5, "wall_time_s": 1.0,
                      "peak_memory_mb": memory, "memory_kind": "cpu_rss", "metrics": {"accuracy": 0.5}}],
            "claims": [], "headline": {"run": "lora legal", "metric": "accuracy"}}


def _book(tmp_path):
    book = tmp_path / "book"
    (book / "notebooks").mkdir(parents=True)
    (book / "_config.yml").write_text("title: t\nonly_build_toc_files: true\nexecute:\n"
                                      "  execute_notebooks: cache\n  timeout: 300\n")
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: notebooks/11_summary\n"
    )
    (book / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Summary"),
                                         nbformat.v4.new_code_cell(NOTEBOOK)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, book / "notebooks" / "11_summary.ipynb")
    return book


def _build(book, env):
    """What the Makefile's book target does around the build."""
    refresh = [sys.executable, "-m", "labkit.summary", "refresh", "--profile", "smoke"]
    subprocess.run(refresh, cwd=book, env=env, check=False)  # exit 1: it forgot a stale summary
    subprocess.run([str(BIN / "jupyter-book"), "build", ".", "-W", "-q"], cwd=book, env=env, check=True,
                   capture_output=True)
    after = subprocess.run(refresh, cwd=book, env=env, check=False)
    assert after.returncode == 0, "the summary did not read the current results in this build"
    html = (book / "_build" / "html" / "notebooks" / "11_summary.html").read_text()
    return float(re.search(r"LORA_MEMORY (\S+)", html).group(1))


def test_makefile_runs_the_refresh_before_and_after_the_build():
    book_target = (ROOT / "Makefile").read_text().split("\nbook:")[1].split("\n\n")[0]
    before, build, after = (
        book_target.index("labkit.summary refresh"),
        book_target.index("jupyter-book build"),
        book_target.rindex("labkit.summary refresh"),
    )
    assert before < build < after


def test_refresh_is_a_no_op_when_fresh_and_forgets_when_a_file_changed(tmp_path):
    results = tmp_path / "results" / "smoke"
    results.mkdir(parents=True)
    (results / "03_lora.json").write_text(json.dumps(_lora_doc(100.0)))
    assert not summary.is_fresh("smoke", tmp_path / "results")  # the summary never ran
    (results / "11_summary.json").write_text(
        json.dumps({"inputs": summary.input_digests("smoke", tmp_path / "results")})
    )
    assert summary.is_fresh("smoke", tmp_path / "results")
    (results / "03_lora.json").write_text(json.dumps(_lora_doc(200.0)))
    assert not summary.is_fresh("smoke", tmp_path / "results")
    (results / "04_full_finetuning.json").write_text("{}")  # a new file counts too
    assert set(summary.input_digests("smoke", tmp_path / "results")) == {
        "03_lora.json",
        "04_full_finetuning.json",
    }


@pytest.mark.skipif(not (BIN / "jupyter-book").exists(), reason="jupyter-book not installed")
def test_a_changed_results_file_reaches_the_built_page(tmp_path):
    book = _book(tmp_path)
    results = tmp_path / "results"
    (results / "smoke").mkdir(parents=True)
    (results / "smoke" / "03_lora.json").write_text(json.dumps(_lora_doc(500.0)))
    env = {
        **os.environ,
        "LABKIT_RESULTS_DIR": str(results),
        "LABKIT_PROFILE": "smoke",
        "OMP_NUM_THREADS": "1",
    }
    assert _build(book, env) == 500.0
    (results / "smoke" / "03_lora.json").write_text(json.dumps(_lora_doc(777.0)))
    assert _build(book, env) == 777.0  # the notebook did not change; the results file did
