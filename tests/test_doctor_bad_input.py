"""Bad values of LABKIT_MODEL, LABKIT_ROOT and LABKIT_PROFILE give a clear error naming the
variable, from `load_model` and from `python -m labkit doctor` (issue 29). Each test runs
doctor in a fresh interpreter, since labkit.paths reads the environment once, at import."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.model import ModelNotAvailable, resolve_model_path
from labkit.paths import MODELS_DIR, ROOT

EMBEDDED = MODELS_DIR / "labworld-base"


def doctor(tmp_path, cwd: Path | None = None, **env) -> tuple[int, str]:
    """`python -m labkit doctor` in a fresh interpreter; (exit status, output)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    environ.update(env, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-m", "labkit", "doctor"], cwd=cwd or ROOT, env=environ,
                         capture_output=True, text=True, timeout=300)
    return run.returncode, run.stdout + run.stderr


def line(output: str, name: str) -> str:
    return next(row for row in output.splitlines() if row[6:].startswith(name))


def test_a_relative_model_path_is_read_from_the_lab_folder_too(monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")  # where notebooks run
    monkeypatch.setenv("LABKIT_MODEL", "data/models/labworld-base")
    assert Path(resolve_model_path()).resolve() == EMBEDDED.resolve()
    monkeypatch.setenv("LABKIT_MODEL", "data/models/no-such-model")
    with pytest.raises(ModelNotAvailable, match=r"LABKIT_MODEL='data/models/no-such-model' is not a folder "
                                                r"\(looked in .*notebooks/data/models/no-such-model, "):
        resolve_model_path()


@pytest.mark.parametrize("value, message", [
    (str(EMBEDDED) + " ", r"has a space at its start or end: remove it"),
    (str(EMBEDDED / "config.json"),
     r"is a file \(.*config.json\), not a model folder: .*here .*labworld-base\."),
    ("./nowhere/model", r"is not a folder \(looked in"),
    ("a/b/c", r"is not a folder .* and not a Hugging Face Hub id"),
])
def test_bad_model_values_name_the_variable(monkeypatch, value, message):
    monkeypatch.setenv("LABKIT_MODEL", value)
    with pytest.raises(ModelNotAvailable, match=message) as caught:
        resolve_model_path()
    assert str(caught.value).startswith(f"LABKIT_MODEL={value!r} "), caught.value


def test_a_hub_id_is_still_a_hub_id(monkeypatch):
    monkeypatch.setenv("LABKIT_MODEL", "HuggingFaceTB/SmolLM2-135M")
    assert resolve_model_path() == "HuggingFaceTB/SmolLM2-135M"


@pytest.mark.parametrize("value, message", [
    (str(EMBEDDED) + " ", "has a space at its start or end"),
    (str(EMBEDDED / "model.safetensors"), "is a file"),
    ("data/models/no-such-model", "is not a folder"),
])
def test_doctor_fails_cleanly_on_a_bad_model(tmp_path, value, message):
    rc, out = doctor(tmp_path, cwd=ROOT / "notebooks", LABKIT_MODEL=value)
    assert "Traceback" not in out, out
    assert rc == 1 and line(out, "model").startswith("FAIL") and message in line(out, "model"), out


def test_doctor_and_load_model_name_a_labkit_root_that_points_nowhere(tmp_path):
    nowhere = tmp_path / "nowhere"
    rc, out = doctor(tmp_path, LABKIT_ROOT=str(nowhere))
    assert "Traceback" not in out, out
    assert rc == 1 and line(out, "lab folder").startswith("FAIL")
    assert f"LABKIT_ROOT={str(nowhere)!r} does not exist" in line(out, "lab folder")
    assert "LABKIT_ROOT" in line(out, "model") and "pretrain" not in line(out, "model"), line(out, "model")
    (tmp_path / "empty").mkdir()
    rc, out = doctor(tmp_path, LABKIT_ROOT=str(tmp_path / "empty"))
    assert rc == 1 and "has no data/ folder" in line(out, "lab folder"), out


def test_doctor_warns_about_the_gpu_profile_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    rc, out = doctor(tmp_path, LABKIT_PROFILE="gpu")
    assert line(out, "profile").startswith("WARN") and "no CUDA GPU is visible" in line(out, "profile"), out
    rc, out = doctor(tmp_path, LABKIT_PROFILE="smoke")
    assert line(out, "profile").startswith("OK"), out
