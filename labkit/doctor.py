"""`python -m labkit doctor`: is this environment fit to run the lab? (README, troubleshooting)

Prints one line per check, each OK, WARN or FAIL, and exits 1 when any check FAILs:

- every dependency in pyproject.toml (the checkout's, else the installed labkit's metadata):
  its installed version against the required range, and that the core libraries import;
- Python against `requires-python`;
- the device (CUDA, MPS or CPU), free memory on it, free RAM and free disk;
- the active profile ($LABKIT_PROFILE, or the automatic choice) and the model it will load
  ($LABKIT_MODEL, or the embedded one), with the model folder's files;
- the LabWorld data.

Versions are read with `importlib.metadata` and compared with `packaging`'s specifiers, the
way pip does (PEP 440: `2.13.0+cpu` satisfies `>=2.13.0`).
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion

from . import paths

GIB = 2**30
MIN_FREE_DISK_GIB = 1.0   # below: FAIL (a checkpoint, a results file or the book may not fit)
LOW_FREE_DISK_GIB = 5.0   # below: WARN
MIN_FREE_RAM_GIB = 1.0    # below: WARN (the cpu profile trains in about 1-2 GiB)
IMPORTS = ("torch", "transformers", "peft", "trl", "datasets", "accelerate")


@dataclass
class Check:
    status: str   # "OK", "WARN" or "FAIL"
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:4s}  {self.name:22s} {self.detail}"


def _pyproject(root: Path) -> dict | None:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        return None
    path = root / "pyproject.toml"
    if not path.exists():
        return None
    project = tomllib.loads(path.read_text()).get("project", {})
    return project if project.get("name") == "labkit" else None


def requirements(root: Path | None = None) -> tuple[list[Requirement], list[Requirement], str | None, str]:
    """(core requirements, dev extras, requires-python, where they were read from)."""
    root = root or paths.ROOT
    project = _pyproject(root)
    if project is not None:
        core = [Requirement(r) for r in project.get("dependencies", [])]
        dev = [Requirement(r) for r in project.get("optional-dependencies", {}).get("dev", [])]
        return core, dev, project.get("requires-python"), str(root / "pyproject.toml")
    try:
        reqs = [Requirement(r) for r in metadata.requires("labkit") or []]
        python = metadata.metadata("labkit").get("Requires-Python")
    except metadata.PackageNotFoundError:
        return [], [], None, "nowhere (labkit is not installed and no pyproject.toml was found)"
    core = [r for r in reqs if r.marker is None]
    dev = [r for r in reqs if r.marker is not None and r.marker.evaluate({"extra": "dev"})]
    return core, dev, python, "the installed labkit's metadata"


def check_requirement(req: Requirement, dev: bool = False) -> Check:
    """OK when the installed version satisfies `req` (a missing dev tool is only a WARN)."""
    bad = "WARN" if dev else "FAIL"
    wanted = str(req.specifier) or "any version"
    label = req.name + (" (dev)" if dev else "")
    if req.marker is not None and not dev and not req.marker.evaluate():
        return Check("OK", label, "not needed on this platform")
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return Check(bad, label, f"not installed, needs {wanted} (run `make setup`)")
    try:
        fits = req.specifier.contains(installed, prereleases=True)
    except InvalidVersion:
        fits = False
    if fits:
        return Check("OK", label, f"{installed} (needs {wanted})")
    return Check(bad, label, f"{installed} installed, needs {wanted} "
                             f"(run `make setup`, or pip install '{req}')")


def check_python(requires: str | None) -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if not requires or SpecifierSet(requires).contains(version):
        return Check("OK", "python", f"{version} at {sys.executable} (needs {requires or 'any'})")
    return Check("FAIL", "python", f"{version} at {sys.executable}, needs {requires}")


def check_imports() -> list[Check]:
    """Installed is not importable: a broken wheel or a mismatched torch fails here."""
    out = []
    for name in IMPORTS:
        try:
            __import__(name)
        except Exception as err:  # ImportError, OSError (shared libraries), RuntimeError ...
            out.append(Check("FAIL", f"import {name}", f"{type(err).__name__}: {str(err)[:160]}"))
    if not out:
        import labkit

        where = Path(labkit.__file__).parent
        out.append(Check("OK", "imports", f"{', '.join(IMPORTS)}; labkit from {where}"))
    return out


def check_device() -> list[Check]:
    import psutil
    import torch

    from .runtime import get_device

    device = get_device()
    checks = []
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info()
        checks.append(Check("OK", "device", f"cuda: {torch.cuda.get_device_name(0)} "
                                            f"(CUDA {torch.version.cuda}), "
                                            f"{free / GIB:.1f} GiB free of {total / GIB:.1f} GiB"))
    elif device.type == "mps":
        checks.append(Check("OK", "device", "mps: Apple GPU (shares the RAM below)"))
    else:
        cuda_build = torch.version.cuda is not None
        note = " (a CUDA build of torch, but no GPU is visible)" if cuda_build else ""
        checks.append(Check("OK", "device", f"cpu: {os.cpu_count()} cores, "
                                            f"torch uses {torch.get_num_threads()} threads{note}"))
    ram = psutil.virtual_memory()
    status = "OK" if ram.available >= MIN_FREE_RAM_GIB * GIB else "WARN"
    checks.append(Check(status, "memory", f"{ram.available / GIB:.1f} GiB free of "
                                          f"{ram.total / GIB:.1f} GiB RAM"
                        + ("" if status == "OK" else " : close other programs or use LABKIT_PROFILE=smoke")))
    where = next((p for p in [paths.ROOT, *paths.ROOT.parents] if p.exists()), Path("/"))
    disk = shutil.disk_usage(where)  # LABKIT_ROOT may point nowhere: check_root reports that
    free = disk.free / GIB
    status = "FAIL" if free < MIN_FREE_DISK_GIB else "WARN" if free < LOW_FREE_DISK_GIB else "OK"
    checks.append(Check(status, "disk", f"{free:.1f} GiB free of {disk.total / GIB:.1f} GiB at {paths.ROOT}"
                        + ("" if status == "OK" else " : free some space (`make clean` removes the build)")))
    return checks


def check_root() -> Check:
    """The lab's folder: a LABKIT_ROOT that does not exist or has no data/ is a FAIL."""
    if paths.ROOT_PROBLEM or paths.root_problem():
        return Check("FAIL", "lab folder", f"{paths.ROOT_PROBLEM or paths.root_problem()}: unset LABKIT_ROOT "
                                           "or point it at the lab's folder")
    how = "from LABKIT_ROOT" if os.environ.get("LABKIT_ROOT", "").strip() else "found from the current folder"
    return Check("OK", "lab folder", f"{paths.ROOT} ({how})")


def check_profile() -> Check:
    from .profiles import get_profile

    asked = os.environ.get("LABKIT_PROFILE")
    try:
        profile = get_profile()
    except ValueError as err:
        return Check("FAIL", "profile", str(err))
    how = (f"from LABKIT_PROFILE={asked}" if asked
           else "chosen automatically (set LABKIT_PROFILE to change it)")
    if profile.name == "gpu":
        try:
            import torch

            cuda = torch.cuda.is_available()
        except Exception:  # torch itself failing is reported by the imports check
            cuda = True
        if not cuda:
            return Check("WARN", "profile", f"gpu, {how}, but no CUDA GPU is visible: the gpu profile's runs "
                                            "are sized for a GPU and will be slow on this CPU "
                                            "(use LABKIT_PROFILE=cpu, or install a CUDA build of torch)")
    return Check("OK", "profile", f"{profile.name}, {how}")


def check_model() -> Check:
    from .model import ModelNotAvailable, resolve_model_path

    try:
        where = resolve_model_path(None)
    except ModelNotAvailable as err:
        return Check("FAIL", "model", str(err))
    except Exception as err:  # any other surprise in the value: a line, not a traceback
        return Check("FAIL", "model", f"{type(err).__name__}: {str(err)[:200]}")
    source = (f"LABKIT_MODEL={os.environ['LABKIT_MODEL']}" if os.environ.get("LABKIT_MODEL")
              else "the embedded model")
    folder = Path(where)
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(where, "config.json"), str)
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        status = "OK" if cached else "FAIL" if offline else "WARN"
        state = "in the local Hub cache" if cached else "not cached: it needs the Hub" + (
            ", but HF_HUB_OFFLINE is set" if offline else "")
        return Check(status, "model", f"Hub id {where} ({source}), {state}")
    weights = sorted(folder.glob("*.safetensors"))
    missing = [name for name, ok in (("config.json", (folder / "config.json").exists()),
                                     ("tokenizer", any((folder / f).exists() for f in
                                                       ("tokenizer.json", "tokenizer_config.json"))),
                                     ("*.safetensors weights", bool(weights))) if not ok]
    if missing:
        return Check("FAIL", "model", f"{folder} ({source}) lacks {', '.join(missing)}")
    size = sum(f.stat().st_size for f in weights) / 2**20
    return Check("OK", "model", f"{folder.name} at {folder} ({source}), {size:.1f} MB of safetensors")


def check_data() -> Check:
    from .data import LABWORLD_DIR

    files = list(LABWORLD_DIR.glob("*/*.jsonl"))
    if not files:
        return Check("FAIL", "data", f"no LabWorld data under {LABWORLD_DIR}: run `python -m labkit data`")
    return Check("OK", "data", f"{len(files)} LabWorld files under {LABWORLD_DIR}")


def run_checks(root: Path | None = None) -> list[Check]:
    core, dev, python, source = requirements(root)
    checks = [check_python(python)]
    if not core:
        checks.append(Check("FAIL", "requirements", f"none found: read from {source}"))
    checks += [check_requirement(r) for r in core] + [check_requirement(r, dev=True) for r in dev]
    checks += check_imports()
    if not any(c.status == "FAIL" and c.name.startswith("import torch") for c in checks):
        checks += check_device()
    checks += [check_root(), check_profile(), check_model(), check_data()]
    return checks


def main(root: Path | None = None) -> int:
    """Print the checks; 1 if any FAILed, else 0."""
    _, _, _, source = requirements(root)
    print(f"labkit doctor: requirements from {source}")
    checks = run_checks(root)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.status == "FAIL"]
    warned = [c for c in checks if c.status == "WARN"]
    print(f"{len(checks)} checks: {len(failed)} FAIL, {len(warned)} WARN"
          + (": fix the FAIL lines above first" if failed else ""))
    return 1 if failed else 0
