"""How `make test` shares the work between pytest-xdist workers (`-n 2 --dist loadscope`).

Two chains of notebooks must each run in order on one worker: the lab's notebooks under nbmake
(chapter 6 loads the policy chapter 5 saved; the summary reads every chapter's results file),
and the same notebooks on another model (tests/test_notebooks_any_model.py, whose runs share one
folder). Each chain is one scope of xdist's LoadScopeScheduling; every other test is a scope of
its own, spread over the workers around the chains. (`--dist loadgroup` with `xdist_group`
marks would say the same, but it silently stops grouping on pytest 9.2: pytest-xdist#1386.)
Without xdist (`TEST_WORKERS=0`, or plain `pytest`) nothing here runs.
"""
import pytest


def chain_of(nodeid: str) -> str | None:
    """The notebook chain a test belongs to ("notebooks", "any-model"), or None."""
    path = nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        return "notebooks"
    if path.endswith("test_notebooks_any_model.py"):
        return "any-model"
    return None


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own scheduler; only if xdist is installed
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class NotebookChains(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return chain_of(nodeid) or nodeid

    return NotebookChains(config, log)
