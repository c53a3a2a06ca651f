"""jsonschema without the import cost of rfc3987_syntax (python-jsonschema/jsonschema#1428).

jsonschema imports every format checker it can when it is imported, and rfc3987_syntax (installed
by Jupyter's `jsonschema[format-nongpl]`) builds ~35 Earley parsers on import: 1.3 s of CPU in
every process that imports jsonschema (each notebook kernel through labkit.results, each
`book/check_build.py` through nbformat), for the "iri" formats, which neither the results schema
nor the notebook format uses and which is checked only with a format checker (we use none).
"""
from __future__ import annotations

import sys


def jsonschema():
    """The jsonschema module, imported without rfc3987_syntax unless something imported either
    already; a later `import rfc3987_syntax` works as usual."""
    if "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # ImportError: skipped
        try:
            import jsonschema
        finally:
            del sys.modules["rfc3987_syntax"]
    import jsonschema

    return jsonschema
