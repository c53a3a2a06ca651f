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


def test_every_heavy_prefix_names_a_test_and_orders_only_those():
    """Each HEAVY entry (handed out first, conftest.py) still names a test function in its file, and
    the ordering puts HEAVY tests first in HEAVY's order while the chains keep theirs."""
    for prefix in root_conftest.HEAVY:
        path, name = prefix.split("::")
        assert re.search(rf"^def {re.escape(name)}", (ROOT / path).read_text(), re.M), prefix
    ids = ["notebooks/05_a.ipynb::05_a.ipynb", "tests/test_stats.py::test_x",
           "notebooks/06_b.ipynb::06_b.ipynb", root_conftest.HEAVY[1] + "[p]", root_conftest.HEAVY[0]]
    ordered = sorted(ids, key=root_conftest.heavy_rank)
    assert ordered == [ids[4], ids[3], ids[0], ids[1], ids[2]]


def test_tests_sharing_a_costly_fixture_are_one_scope():
    """Each SHARED prefix still names a test and is one scope; the chains and other tests keep theirs."""
    for prefix in root_conftest.SHARED:
        path, name = prefix.split("::")
        assert re.search(rf"^def {re.escape(name)}", (ROOT / path).read_text(), re.M), prefix
    doctor = [root_conftest.SHARED[0] + "fails_cleanly[a]", root_conftest.SHARED[0] + "warns_about_gpu"]
    assert {root_conftest.scope_of(nodeid) for nodeid in doctor} == {root_conftest.SHARED[0]}
    assert root_conftest.scope_of("notebooks/05_a.ipynb::05_a.ipynb") == "notebooks"
    assert root_conftest.scope_of("tests/test_stats.py::test_x[1]") == "tests/test_stats.py::test_x[1]"
