"""Bad values of LABKIT_MODEL, LABKIT_ROOT and LABKIT_PROFILE give a clear error naming the
variable, from `load_model` and from `python -m labkit doctor` (issue 29). Doctor runs in a fresh
interpreter with a fresh import of labkit per case, since labkit.paths reads the environment once,
at import: all the cases of this file in one interpreter (tests/_doctor_runs.py), which imports
torch, transformers, peft, ... once instead of once per case (issue 28's make test budget)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.model import ModelNotAvailable, resolve_model_path
from labkit.paths import MODELS_DIR, ROOT

EMBEDDED = MODELS_DIR / "labworld-base"
BAD_MODELS = [
    (str(EMBEDDED) + " ", "has a space at its start or end"),
    (str(EMBEDDED / "model.safetensors"), "is a file"),
    ("data/models/no-such-model", "is not a folder"),
]


@pytest.fixture(scope="module")
def doctor_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("doctor")


@pytest.fixture(scope="module")
def doctor(doctor_tmp):
    """`python -m labkit doctor` for every case of this file, run once in one fresh interpreter;
    doctor(case) -> (exit status, output). Every xdist scope of these tests is one (conftest.SHARED)."""
    (doctor_tmp / "empty").mkdir()
    cases = {f"model {value}": (ROOT / "notebooks", {"LABKIT_MODEL": value}) for value, _ in BAD_MODELS}
    cases.update({"root nowhere": (ROOT, {"LABKIT_ROOT": str(doctor_tmp / "nowhere")}),
                  "root empty": (ROOT, {"LABKIT_ROOT": str(doctor_tmp / "empty")}),
                  "profile gpu": (ROOT, {"LABKIT_PROFILE": "gpu"}),
                  "profile smoke": (ROOT, {"LABKIT_PROFILE": "smoke"})})
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    # this tree's labkit, as `python -m labkit` run from it imports: not the one the venv was installed
    # from (a clone sharing another tree's venv would test that tree's labkit)
    environ.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, str(Path(__file__).parent / "_doctor_runs.py")], env=environ,
                         input=json.dumps([{"cwd": str(cwd), "env": env} for cwd, env in cases.values()]),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip(), run.stdout[-3000:] + run.stderr[-3000:]
    results = dict(zip(cases, json.loads(run.stdout.splitlines()[-1])))
    return lambda case: tuple(results[case])


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


@pytest.mark.parametrize("value, message", BAD_MODELS)
def test_doctor_fails_cleanly_on_a_bad_model(doctor, value, message):
    rc, out = doctor(f"model {value}")  # run from notebooks/
    assert "Traceback" not in out, out
    assert rc == 1 and line(out, "model").startswith("FAIL") and message in line(out, "model"), out


def test_doctor_and_load_model_name_a_labkit_root_that_points_nowhere(doctor, doctor_tmp):
    nowhere = doctor_tmp / "nowhere"
    rc, out = doctor("root nowhere")
    assert "Traceback" not in out, out
    assert rc == 1 and line(out, "lab folder").startswith("FAIL")
    assert f"LABKIT_ROOT={str(nowhere)!r} does not exist" in line(out, "lab folder")
    assert "LABKIT_ROOT" in line(out, "model") and "pretrain" not in line(out, "model"), line(out, "model")
    rc, out = doctor("root empty")
    assert rc == 1 and "has no data/ folder" in line(out, "lab folder"), out


def test_doctor_warns_about_the_gpu_profile_without_cuda(doctor):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    rc, out = doctor("profile gpu")
    assert line(out, "profile").startswith("WARN") and "no CUDA GPU is visible" in line(out, "profile"), out
    rc, out = doctor("profile smoke")
    assert line(out, "profile").startswith("OK"), out
