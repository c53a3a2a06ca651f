"""labkit.answers: exercise answers cross from a student's kernel to the checking one as data
only (issue 29): what round-trips, what is refused, and that decoding never runs code."""
from __future__ import annotations

import json
import math

import pytest

from labkit import answers


def roundtrip(value):
    return answers.load(answers.dumps(["v"], {"v": value}))["v"]


@pytest.mark.parametrize("value", [None, True, 3, 2**80, -1.5, "I do not know", ..., (1, (2, ...)), [1, "a"],
                                   {"legal": 0.5, 3: [1]}, {1, 2}, 1 + 2j, float("inf")])
def test_data_round_trips_exactly(value):
    got = roundtrip(value)
    assert got == value and type(got) is type(value)


def test_nan_and_tensors_round_trip():
    import numpy
    import torch

    assert math.isnan(roundtrip(float("nan")))
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3) / 3
    got = roundtrip(t)
    assert got.dtype == torch.float32 and got.shape == (2, 3) and torch.equal(got, t)
    assert roundtrip(torch.tensor(7)).item() == 7
    assert roundtrip(numpy.float64(0.25)) == 0.25
    assert (roundtrip(numpy.array([[1, 2]], dtype="int64")) == numpy.array([[1, 2]])).all()


def test_code_is_not_data():
    def soften(z, t):
        return z / t

    text = answers.dumps(["soften", "absent", "x"], {"soften": soften, "x": 1})
    raw = json.loads(text)
    assert set(raw) == {"soften", "x"} and "$code" in raw["soften"]
    assert answers.load(text) == {"x": 1}  # a code answer is left out, never rebuilt


@pytest.mark.parametrize("bad", [
    '{"v": {"$tensor": [1], "dtype": "object", "shape": [1]}}',  # an unknown dtype
    '{"v": {"__reduce__": "os.system"}}',                       # not an encoding
    '{"v": {"$float": "__import__(\'os\')"}}',                  # not a float
    '{"not a name!": 1}', '[1, 2]',
])
def test_malformed_data_is_refused(bad):
    with pytest.raises(ValueError):
        answers.load(bad)


def test_emit_and_parse(capsys):
    answers.emit(2, ["my_prompt"], {"my_prompt": "a\nb -> c"})
    record = answers.parse(capsys.readouterr().out)
    assert record == {"exercise": 2, "answers": {"my_prompt": "a\nb -> c"}}
    assert answers.parse("no marker here") is None
    assert answers.parse(answers.MARKER + "{broken") is None
    two = answers.MARKER + '{"exercise": 1, "answers": {}}\n'
    assert answers.parse(two + two) is None  # a forged second line makes it unreadable, not another answer
