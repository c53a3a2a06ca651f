"""`python -m labkit doctor`: versions against pyproject, device, memory, disk, profile, model; exit 1
on a FAIL."""
from pathlib import Path

from packaging.requirements import Requirement

from labkit import doctor
from labkit.__main__ import main as cli

ROOT = Path(__file__).resolve().parents[1]


def test_requirement_checks_compare_installed_versions_like_pip():
    assert doctor.check_requirement(Requirement("torch>=1.0")).status == "OK"
    old = doctor.check_requirement(Requirement("torch>=999"))
    assert old.status == "FAIL" and "installed, needs >=999" in old.detail
    missing = doctor.check_requirement(Requirement("surely-not-installed-pkg>=1"))
    assert missing.status == "FAIL" and "not installed" in missing.detail
    assert doctor.check_requirement(Requirement("surely-not-installed-pkg"), dev=True).status == "WARN"
    assert doctor.check_requirement(Requirement("torch<1.0")).status == "FAIL"


def test_requirements_are_read_from_pyproject():
    core, dev, python, source = doctor.requirements(ROOT)
    assert source.endswith("pyproject.toml")
    names = {r.name for r in core}
    assert {"torch", "transformers", "peft", "trl", "packaging"} <= names
    assert "pytest" in {r.name for r in dev} and python


def test_doctor_passes_here_and_prints_every_dependency(capsys, monkeypatch):
    monkeypatch.setenv("LABKIT_PROFILE", "smoke")
    monkeypatch.delenv("LABKIT_MODEL", raising=False)
    assert cli(["doctor"]) == 0
    out = capsys.readouterr().out
    core, _, _, _ = doctor.requirements(ROOT)
    for req in core:
        assert f"OK    {req.name}" in out, req.name
    for name in ("device", "memory", "disk", "profile", "model", "data"):
        assert f"  {name}" in out
    assert "smoke, from LABKIT_PROFILE=smoke" in out and "labworld-base" in out


def test_doctor_fails_on_a_version_that_does_not_fit(tmp_path, capsys, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "labkit"\nrequires-python = ">=3.10"\n'
        'dependencies = ["torch>=999.0", "numpy>=1"]\n')
    monkeypatch.setenv("LABKIT_PROFILE", "smoke")
    assert doctor.main(tmp_path) == 1
    out = capsys.readouterr().out
    assert "FAIL  torch" in out and "needs >=999.0" in out and "OK    numpy" in out
    assert "1 FAIL" in out


def test_doctor_fails_on_an_unknown_profile(capsys, monkeypatch):
    monkeypatch.setenv("LABKIT_PROFILE", "laptop")
    assert doctor.main(ROOT) == 1
    assert "FAIL  profile                Unknown LABKIT_PROFILE 'laptop'" in capsys.readouterr().out


def test_doctor_fails_on_a_model_folder_without_tokenizer(tmp_path, capsys, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    monkeypatch.setenv("LABKIT_MODEL", str(tmp_path))
    monkeypatch.setenv("LABKIT_PROFILE", "smoke")
    assert doctor.main(ROOT) == 1
    assert "lacks tokenizer" in capsys.readouterr().out


def test_doctor_fails_on_a_full_disk(capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100 * 2**30, 99.8 * 2**30, 0.2 * 2**30))
    monkeypatch.setenv("LABKIT_PROFILE", "smoke")
    assert doctor.main(ROOT) == 1
    assert "FAIL  disk                   0.2 GiB free" in capsys.readouterr().out


def test_ci_runs_doctor_and_readme_points_to_it_first():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make test") < ci.index("-m labkit doctor")
    readme = (ROOT / "README.md").read_text()
    trouble = readme[readme.index("## Troubleshooting"):]
    first_step = trouble.split("\n\n")[1]
    assert "python -m labkit doctor" in first_step
