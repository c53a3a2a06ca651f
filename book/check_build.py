"""Make `make book` fail until every chapter has run: no page without its outputs, no missing results.

    python book/check_build.py           after `jupyter-book build`: exit 1 naming each notebook that
                                         has no successful execution in the cache or no results file
    python book/check_build.py --before  before it: nothing printed, always exit 0

Why: with `execute_notebooks: cache`, a notebook that failed (an error, a cell timeout, a kill)
is not cached, but Sphinx does not read its page again on the next build because the notebook
did not change, so the next build passes in seconds with the chapter's outputs missing. For
each such notebook this script deletes the page's doctree, which makes Sphinx read the page
again, so myst-nb executes the notebook again (and a cached notebook just reloads its outputs).

A notebook counts as executed when jupyter-cache holds a successful run of its current code
(myst-nb caches only runs that raised no error) and, for a chapter under notebooks/, when
results/<profile>/<stem>.json exists for the profile the build ran with.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def toc_notebooks(root: Path) -> list[Path]:
    """Every .ipynb that _toc.yml names (root page, chapters, sections), in order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    out = []
    for entry in found:
        path = root / entry
        path = path if path.suffix else path.with_suffix(".ipynb")
        if path.suffix == ".ipynb" and path.exists():
            out.append(path)
    return out


def profile_name() -> str:
    """The profile the notebooks ran with: $LABKIT_PROFILE, else labkit's automatic choice."""
    sys.path.insert(0, str(ROOT))
    from labkit.profiles import get_profile

    return get_profile(os.environ.get("LABKIT_PROFILE") or None).name


def _skip_message(cache, nb) -> str | None:
    """The first output line of a notebook that ran and skipped its own rest with
    `labkit.runtime.skip_rest_of_notebook` (chapter 10 without its real model), else None."""
    if "skip_rest_of_notebook(" not in "".join(c.source for c in nb.cells if c.cell_type == "code"):
        return None
    try:
        _, executed = cache.merge_match_into_notebook(nb)
    except KeyError:
        return None
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            if "skipped" in text:
                return text.strip().splitlines()[0][:160]
    return None


def problems(root: Path, build_dir: Path, results_dir: Path, profile: str,
             notes: list[str] | None = None) -> dict[Path, list[str]]:
    """{notebook: [what is missing]} for every notebook of the book that did not run to the end.
    A chapter that ran and skipped itself (it prints why) needs no results file; `notes` gets a line."""
    sys.path.insert(0, str(ROOT))
    from labkit.fastimport import jsonschema

    jsonschema()  # before nbformat imports it: without rfc3987_syntax's 1.3 s of parsers
    import nbformat
    from jupyter_cache import get_cache

    cache_dir = build_dir / ".jupyter_cache"
    cache = get_cache(str(cache_dir)) if cache_dir.exists() else None
    found: dict[Path, list[str]] = {}
    for path in toc_notebooks(root):
        missing = []
        nb = nbformat.read(path, as_version=4)
        if cache is None:
            missing.append("never executed (no jupyter cache)")
        else:
            try:
                cache.match_cache_notebook(nb)
            except KeyError:
                records = cache.list_project_records()
                record = next((r for r in records if Path(r.uri) == path.resolve()), None)
                error = re.sub(r"\x1b\[[0-9;]*m", "", (record.traceback or "") if record else "")
                error = error.strip().splitlines()[-1:]
                missing.append("no successful execution of its current code"
                               + (f" (last error: {error[0][:200]})" if error else ""))
        if path.parent.name == "notebooks" and not (results_dir / profile / f"{path.stem}.json").exists():
            skipped = _skip_message(cache, nb) if cache is not None and not missing else None
            if skipped and notes is not None:
                notes.append(f"  {path.relative_to(root)}: ran and skipped itself: {skipped}")
            elif not skipped:
                missing.append(f"no results file {results_dir.name}/{profile}/{path.stem}.json")
        if missing:
            found[path] = missing
    return found


def invalidate(root: Path, build_dir: Path, notebooks) -> None:
    """Delete each notebook's doctree so that Sphinx reads its page (and myst-nb runs it) again, and
    its cached execution if it has one: a notebook cached but without its results file (deleted, or
    written to another results folder) would otherwise be reloaded from the cache and never run."""
    cache_dir = build_dir / ".jupyter_cache"
    cache = None
    if cache_dir.exists():
        from jupyter_cache import get_cache

        cache = get_cache(str(cache_dir))
    for path in notebooks:
        doctree = build_dir / ".doctrees" / path.resolve().relative_to(root.resolve()).with_suffix(".doctree")
        doctree.unlink(missing_ok=True)
        if cache is not None:
            import nbformat

            try:
                record = cache.match_cache_notebook(nbformat.read(path, as_version=4))
            except KeyError:
                continue
            cache.remove_cache(record.pk)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", action="store_true", help="only mark unexecuted notebooks for re-reading")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--build-dir", type=Path, default=None, help="default <root>/_build")
    parser.add_argument("--results-dir", type=Path, default=None, help="default <root>/results")
    parser.add_argument("--profile", default=None, help="default: the one labkit picks")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    build_dir = args.build_dir or root / "_build"
    results_dir = args.results_dir or root / "results"
    notes: list[str] = []
    found = problems(root, build_dir, results_dir, args.profile or profile_name(), notes)
    invalidate(root, build_dir, found)
    if args.before:
        return 0
    if notes:
        print("check_build: note\n" + "\n".join(notes))
    if not found:
        print(f"check_build: all {len(toc_notebooks(root))} notebooks of the book executed")
        return 0
    print(f"check_build: {len(found)} notebook(s) did not run to the end; the book is incomplete:")
    for path, missing in found.items():
        print(f"  {path.relative_to(root)}: {'; '.join(missing)}")
    print("The next `make book` executes them again.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
