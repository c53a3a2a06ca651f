"""Safe loading: labkit never enables trust_remote_code, never unpickles without weights_only=True;
no token-like secrets in the repository, the results, or the built book."""
import ast
import re
import subprocess
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SECRET = re.compile(
    r"\b(hf_[A-Za-z0-9]{30,}|ghp_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,}|AKIA[0-9A-Z]{16})\b"
)


def unsafe_calls(source: str, where: str) -> list[str]:
    """Every call that enables remote code or unpickles untrusted data, as 'where:line: what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        remote = keywords.get("trust_remote_code")
        if remote is not None and not (isinstance(remote, ast.Constant) and remote.value is False):
            found.append(f"{where}:{node.lineno}: {name}(trust_remote_code={ast.unparse(remote)})")
        if name == "torch.load" or name.endswith(".torch.load"):
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                found.append(f"{where}:{node.lineno}: {name} without weights_only=True")
        if name in ("pickle.load", "pickle.loads", "joblib.load", "dill.load"):
            found.append(f"{where}:{node.lineno}: {name} (unpickles arbitrary code)")
    return found


def _sources():
    for path in sorted((ROOT / "labkit").rglob("*.py")):
        yield str(path.relative_to(ROOT)), path.read_text()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                code = "\n".join(
                    ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))
                )
                yield f"{path.relative_to(ROOT)}[cell {i}]", code


def test_the_scanner_catches_each_unsafe_call():
    bad = ("AutoModel.from_pretrained(p, trust_remote_code=True)\n"
           "AutoTokenizer.from_pretrained(p, trust_remote_code=flag)\n"
           "torch.load(f)\n"
           "torch.load(f, weights_only=False)\n"
           "pickle.load(f)\n")
    assert len(unsafe_calls(bad, "x")) == 5
    good = "AutoModel.from_pretrained(p, trust_remote_code=False)\ntorch.load(f, weights_only=True)\n"
    assert unsafe_calls(good, "x") == []


def test_labkit_and_notebooks_never_enable_remote_code_or_unsafe_unpickling():
    problems = [p for where, source in _sources() for p in unsafe_calls(source, where)]
    assert not problems, "unsafe loading:\n" + "\n".join(problems)


def secrets_in(paths) -> list[str]:
    """'file:line' for each token-like secret in the given files and folders (absent ones skipped)."""
    found = []
    for base in paths:
        base = Path(base)
        files = (
            [base]
            if base.is_file()
            else sorted(p for p in base.rglob("*") if p.is_file())
            if base.is_dir()
            else []
        )
        for path in files:
            if path.stat().st_size > 50 * 2**20 or path.suffix in (
                ".safetensors",
                ".pt",
                ".bin",
                ".png",
                ".woff2",
            ):
                continue
            text = path.read_text(errors="ignore")
            for match in SECRET.finditer(text):
                found.append(f"{path}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)[:6]}...")
    return found


def test_the_secret_scanner_finds_a_planted_token(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cell.ipynb").write_text('{"text": "login(\\"hf_' + "a1B2" * 9 + '\\")"}')
    assert len(secrets_in([tmp_path / "out", tmp_path / "absent"])) == 1
    assert secrets_in([tmp_path / "absent"]) == []


def test_no_tokens_in_results_built_book_or_tracked_files():
    folders = [ROOT / "results", ROOT / "_build" / "html", ROOT / "_build" / "jupyter_execute",
               ROOT / "notebooks", ROOT / "artifacts"]
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        tracked = []
    files = [ROOT / f for f in tracked if (ROOT / f).is_file()]
    found = secrets_in(folders + files)
    assert not found, "token-like secrets (remove them, and revoke the tokens):\n" + "\n".join(found)
