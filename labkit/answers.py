"""Exercise answers as plain data (the grader, labkit.grading): how an answer leaves a student's
kernel and enters the kernel that checks it.

The grader runs a submission, then evaluates the instructor's checks in another interpreter that
never ran the submission's code. What crosses between them is data only: `emit` (run in the
student's kernel) prints the answer values as JSON; `decode` (in the checking kernel) rebuilds
them. Decoding never imports, calls or unpickles anything the submission chose: numbers,
strings, None, `...`, tuples, lists, dicts, sets, and tensors/arrays of a known dtype.

An answer that is not data (a function, a model) is encoded as `{"$code": "<type>"}`: its check
can only run where the code is, in the student's own kernel (see README, "For instructors").
"""
from __future__ import annotations

import json
import math

MARKER = "LABKIT-ANSWERS "
MAX_CHARS = 20_000_000  # an answer larger than this (as JSON) is refused
_DTYPES = {"float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool",
           "complex64", "complex128"}


class NotData(ValueError):
    """An answer value that cannot cross as data."""


def _float(x: float):
    return x if math.isfinite(x) else {"$float": repr(x)}


def encode(value, depth: int = 0):
    """`value` as JSON-able data; raises NotData for anything else (a function, a model...)."""
    if depth > 50:
        raise NotData("nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else {"$int": str(value)}
    if isinstance(value, float):
        return _float(value)
    if value is Ellipsis:
        return {"$": "..."}
    if isinstance(value, complex):
        return {"$complex": [_float(value.real), _float(value.imag)]}
    if isinstance(value, tuple):  # a namedtuple crosses as a plain tuple (they compare equal)
        return {"$tuple": [encode(v, depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return {"$set": [encode(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"$dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    kind = type(value).__module__.split(".")[0]
    if kind == "torch" and type(value).__name__ in ("Tensor", "Parameter"):
        dtype = str(value.dtype).replace("torch.", "")
        if dtype not in _DTYPES:
            raise NotData(f"a tensor of dtype {dtype}")
        data = value.detach().cpu()
        data = data.float() if dtype == "bfloat16" else data
        return {"$tensor": _floats(data.tolist()), "dtype": dtype, "shape": list(value.shape)}
    if kind == "numpy":
        dtype = str(getattr(value, "dtype", ""))
        if dtype not in _DTYPES:
            raise NotData(f"a numpy value of dtype {dtype or type(value).__name__}")
        if getattr(value, "ndim", 0) == 0 and type(value).__name__ != "ndarray":
            return encode(value.item(), depth + 1)
        return {"$ndarray": _floats(value.tolist()), "dtype": dtype, "shape": list(value.shape)}
    raise NotData(f"a {type(value).__module__}.{type(value).__qualname__}")


def _floats(data):
    if isinstance(data, list):
        return [_floats(d) for d in data]
    if isinstance(data, complex):
        return {"$complex": [_float(data.real), _float(data.imag)]}
    return _float(data) if isinstance(data, float) else data


def _unfloats(data):
    if isinstance(data, list):
        return [_unfloats(d) for d in data]
    if isinstance(data, dict):
        return decode(data)
    return data


def decode(data, depth: int = 0):
    """The value `encode` encoded. Raises ValueError on anything `encode` does not write."""
    if depth > 60:
        raise ValueError("nested too deeply")
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    if isinstance(data, list):
        return [decode(d, depth + 1) for d in data]
    if not isinstance(data, dict) or len(data) not in (1, 3):
        raise ValueError("not an encoded answer")
    if "$" in data and data["$"] == "...":
        return Ellipsis
    if "$int" in data:
        return int(str(data["$int"]))
    if "$float" in data:
        text = str(data["$float"])
        if text not in ("nan", "inf", "-inf"):
            raise ValueError(f"bad float {text!r}")
        return float(text)
    if "$complex" in data:
        real, imag = (decode(x, depth + 1) for x in data["$complex"])
        return complex(real, imag)
    if "$tuple" in data:
        return tuple(decode(d, depth + 1) for d in data["$tuple"])
    if "$set" in data:
        return {decode(d, depth + 1) for d in data["$set"]}
    if "$dict" in data:
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in data["$dict"]}
    if "$code" in data:
        raise NotData(str(data["$code"]))
    for key, module in (("$tensor", "torch"), ("$ndarray", "numpy")):
        if key in data:
            dtype = str(data.get("dtype"))
            if dtype not in _DTYPES:
                raise ValueError(f"bad dtype {dtype!r}")
            values = _unfloats(data[key])
            shape = [int(s) for s in data.get("shape", [])]
            if module == "torch":
                import torch

                return torch.tensor(values, dtype=getattr(torch, dtype)).reshape(shape)
            import numpy

            return numpy.array(values, dtype=dtype).reshape(shape)
    raise ValueError("not an encoded answer")


def dumps(names: list[str], namespace: dict) -> str:
    """{name: encoded value} as JSON, for the names present in `namespace`; a value that is not
    data becomes {"$code": type}, and a missing name is left out."""
    out = {}
    for name in names:
        if name not in namespace:
            continue
        try:
            out[name] = encode(namespace[name])
        except NotData as why:
            out[name] = {"$code": str(why)}
        except Exception as err:  # a value whose conversion raises: treat as not data
            out[name] = {"$code": f"{type(err).__name__}"}
    text = json.dumps(out, allow_nan=False)
    if len(text) > MAX_CHARS:
        text = json.dumps({name: {"$code": "an answer too large to grade"} for name in out})
    return text


def emit(exercise: int, names: list[str], namespace: dict) -> None:
    """Print the answer values of `exercise` on one marked line (run in the student's kernel)."""
    print(MARKER + json.dumps({"exercise": exercise, "answers": json.loads(dumps(names, namespace))}))


def parse(text: str) -> dict | None:
    """The {"exercise", "answers"} record from a capture cell's output; None if absent or broken."""
    lines = [line for line in text.splitlines() if line.startswith(MARKER)]
    if len(lines) != 1 or len(lines[0]) > MAX_CHARS + 1000:
        return None
    try:
        record = json.loads(lines[0][len(MARKER):])
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("answers"), dict):
        return None
    return record


def load(text: str) -> dict:
    """Decoded {name: value} from `dumps` output (run in the checking kernel). Names whose value
    is code are left out; raises ValueError on malformed data."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("not an answers record")
    values = {}
    for name, data in raw.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"bad name {name!r}")
        try:
            values[name] = decode(data)
        except NotData:
            continue
    return values
