"""Exercise checks (every chapter's exercises): a clear pass line, or an AssertionError that
says what was expected, so a wrong answer fails the notebook (and an instructor's nbmake run)."""
from __future__ import annotations

import math


def _close(got, expected, rel_tol: float | None) -> bool:
    if isinstance(expected, (tuple, list)):
        return (isinstance(got, (tuple, list)) and len(got) == len(expected)
                and all(_close(g, e, rel_tol) for g, e in zip(got, expected)))
    if rel_tol is not None and isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(got, expected, rel_tol=rel_tol, abs_tol=1e-12)
    return got == expected


def _unanswered(got) -> bool:
    """None or `...`, or a tuple/list holding a `...` (a student edition's stubs, `a, b = ..., ...`)."""
    if isinstance(got, (tuple, list)):
        return any(g is Ellipsis or (isinstance(g, (tuple, list)) and _unanswered(g)) for g in got)
    return got is None or got is Ellipsis


def check(name: str, got, expected, rel_tol: float | None = None, hint: str = "") -> None:
    """Pass if `got` equals `expected` (within `rel_tol` for numbers); raise otherwise."""
    if _unanswered(got):
        raise AssertionError(f"✗ {name}: no answer yet — fill in the cell above. {hint}".strip())
    if not _close(got, expected, rel_tol):
        raise AssertionError(f"✗ {name}: got {got!r}, expected {expected!r}. {hint}".strip())
    print(f"✓ {name}")


def check_true(name: str, condition: bool, why: str) -> None:
    """Pass if `condition` holds; `why` explains what was required."""
    if not condition:
        raise AssertionError(f"✗ {name}: {why}")
    print(f"✓ {name}")
