"""How `make test` shares the work between pytest-xdist workers (`-n 2 --dist loadscope`).

Two chains of notebooks must each run in order on one worker: the lab's notebooks under nbmake
(chapter 6 loads the policy chapter 5 saved; the summary reads every chapter's results file),
and the same notebooks on another model (tests/test_notebooks_any_model.py, whose runs share one
folder). Each chain is one scope of xdist's LoadScopeScheduling; every other test is a scope of
its own (or, for the tests that share one costly fixture, `SHARED`, one scope per fixture),
spread over the workers around the chains. (`--dist loadgroup` with `xdist_group`
marks would say the same, but it silently stops grouping on pytest 9.2: pytest-xdist#1386.)
Without xdist (`TEST_WORKERS=0`, or plain `pytest`) nothing here runs.

The scheduler hands out the chains first (xdist orders scopes by their number of tests), then the
other scopes in collection order. On the workers the tests that take tens of seconds (`HEAVY`,
longest first) are collected before the rest, so they are handed out right after the chains and
no worker starts one of them while the other has only seconds of work left (longest first).
"""
import pytest

# Tests that take tens of seconds each (whole notebooks, books, subprocesses that load torch), roughly
# longest first, as node id prefixes. tests/test_parallel_tests.py checks each still names a test.
HEAVY = (
    "tests/test_grading.py::test_real_notebook_student_instructor_and_wrong_editions",
    "tests/test_grading_adversarial.py::test_chapter_1_adversarial_class",
    "tests/test_book.py::test_a_failed_notebook_runs_again_and_fails_the_build_until_it_passes",
    "tests/test_recipes.py::test_two_cpu_processes_match_one",
    "tests/test_summary_stale.py::test_a_changed_results_file_reaches_the_built_page",
    "tests/test_doctor_bad_input.py::test_doctor_",
    "tests/test_memory_estimate.py::test_estimate_matches_measured_peak_on_smollm2_135m",
    "tests/test_training.py::test_a_killed_run_resumes_from_its_last_checkpoint",
    "tests/test_grading_adversarial.py::test_a_kernel_that_ignores_the_interrupt_is_killed",
    "tests/test_bench.py::test_bench_runs_every_method_and_writes_a_results_file",
    "tests/test_data_and_model.py::test_hub_id_with_unreachable_hub_fails_within_seconds",
    "tests/test_memory_estimate.py::test_estimate_matches_measured_peak_on_the_embedded_model",
    "tests/test_grading.py::test_grade_reports_every_exercise",
    "tests/test_training.py::test_the_same_seed_gives_the_same_run_twice",
    "tests/test_book.py::test_a_missing_results_file_fails_the_check_even_with_a_cached_run",
)


def heavy_rank(nodeid: str) -> int:
    """Position of the test in HEAVY (0: hand it out first); len(HEAVY) for every other test."""
    return next((i for i, prefix in enumerate(HEAVY) if nodeid.startswith(prefix)), len(HEAVY))


# Tests that share one costly module fixture, as node id prefixes: each prefix is one xdist scope,
# so one worker runs the fixture once (a second worker would run it again). test_parallel_tests.py
# checks each still names a test.
SHARED = (
    "tests/test_doctor_bad_input.py::test_doctor_",  # every doctor run in one interpreter
    # the three measured runs on a model, forked from one interpreter
    "tests/test_memory_estimate.py::test_estimate_matches_measured_peak_on_the_embedded_model",
    "tests/test_memory_estimate.py::test_estimate_matches_measured_peak_on_smollm2_135m",
)


def scope_of(nodeid: str) -> str:
    """The xdist scope of a test: its notebook chain, its SHARED prefix, or the test itself."""
    return chain_of(nodeid) or next((prefix for prefix in SHARED if nodeid.startswith(prefix)), nodeid)


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
            return scope_of(nodeid)

    return NotebookChains(config, log)


def pytest_collection_modifyitems(config, items):
    """On an xdist worker: HEAVY tests first, in HEAVY's order; every other test keeps its place
    relative to the others (a stable sort), so each chain stays in order."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: heavy_rank(item.nodeid))
