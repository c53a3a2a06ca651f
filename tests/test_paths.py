"""labkit.paths: where ROOT, data and results are, and the environment overrides."""
import importlib
from pathlib import Path

import pytest

import labkit
import labkit.paths as paths


@pytest.fixture
def reload_paths(monkeypatch):
    """Reload labkit.paths under a test's cwd/env, and restore it afterwards."""
    monkeypatch.delenv("LABKIT_ROOT", raising=False)
    monkeypatch.delenv("LABKIT_RESULTS_DIR", raising=False)
    yield lambda: importlib.reload(paths)
    monkeypatch.undo()
    importlib.reload(paths)


def test_root_is_nearest_folder_with_toc(tmp_path, monkeypatch, reload_paths):
    (tmp_path / "_toc.yml").write_text("format: jb-book\n")
    (tmp_path / "notebooks" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebooks" / "deep")
    p = reload_paths()
    assert p.ROOT == tmp_path.resolve()
    assert p.DATA_DIR == p.ROOT / "data"
    assert p.MODELS_DIR == p.ROOT / "data" / "models"
    assert p.RESULTS_DIR == p.ROOT / "results"


def test_env_overrides(tmp_path, monkeypatch, reload_paths):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABKIT_ROOT", str(tmp_path / "lab"))
    monkeypatch.setenv("LABKIT_RESULTS_DIR", str(tmp_path / "elsewhere"))
    p = reload_paths()
    assert p.ROOT == (tmp_path / "lab").resolve()
    assert p.DATA_DIR == p.ROOT / "data"
    assert p.RESULTS_DIR == tmp_path / "elsewhere"


def test_falls_back_to_the_package_parent(tmp_path, monkeypatch, reload_paths):
    monkeypatch.chdir(tmp_path)  # no _toc.yml here or above (a temp folder)
    if any((folder / "_toc.yml").exists() for folder in [tmp_path, *tmp_path.parents]):
        pytest.skip("a _toc.yml sits above the temp folder")
    p = reload_paths()
    assert p.ROOT == Path(labkit.__file__).resolve().parent.parent
