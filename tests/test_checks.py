import pytest

from labkit.checks import check, check_true


def test_check_passes_on_the_right_answer(capsys):
    check("sum", 4, 4)
    check("ratio", 0.3333, 1 / 3, rel_tol=1e-3)
    check("pair", (1, 2.0), (1, 2.0000001), rel_tol=1e-6)
    assert capsys.readouterr().out.count("✓") == 3


@pytest.mark.parametrize("got,expected,tol", [(5, 4, None), (0.5, 1 / 3, 1e-3), ((1, 3), (1, 2), None),
                                              ([1], (1, 2), None), (None, 1, None)])
def test_check_fails_on_a_wrong_or_missing_answer(got, expected, tol):
    with pytest.raises(AssertionError, match="✗"):
        check("x", got, expected, rel_tol=tol)


def test_check_true():
    check_true("ok", True, "never shown")
    with pytest.raises(AssertionError, match="must be positive"):
        check_true("sign", False, "must be positive")
