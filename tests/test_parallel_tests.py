"""`make test` runs on two pytest-xdist workers; the root conftest.py keeps each chain of notebooks
in order on one worker (chapter 6 needs chapter 5's policy; the any-model runs share a folder)."""
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
root_conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(root_conftest)


def test_every_notebook_is_in_one_chain_and_unit_tests_in_none():
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert {root_conftest.chain_of(f"notebooks/{nb}::{nb}") for nb in notebooks} == {"notebooks"}
    any_model = "tests/test_notebooks_any_model.py::test_notebook_runs_on_another_model[05_x]"
    assert root_conftest.chain_of(any_model) == "any-model"
    for unit in ["tests/test_stats.py::test_paired_difference", "tests/test_summary.py::test_x[a.ipynb]"]:
        assert root_conftest.chain_of(unit) is None


def test_make_test_distributes_by_scope():
    """The scheduler hook acts only under --dist loadscope: the Makefile must ask for it."""
    recipe = re.search(r"^test:.*?(?=^\S)", (ROOT / "Makefile").read_text(), re.S | re.M).group(0)
    assert "-n $(TEST_WORKERS) --dist loadscope" in recipe and "OMP_NUM_THREADS=1" in recipe
