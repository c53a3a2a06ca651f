"""`python -m labkit doctor` under several environments, in one fresh interpreter (not collected by pytest).

    python tests/_doctor_runs.py < CASES.json   prints [[exit status, output], ...] as JSON, last line

CASES is a list of {"cwd": folder, "env": {LABKIT_*: value}}. Each case gets its own LABKIT_*
variables (the others removed), its working folder and a fresh import of labkit (every labkit
module is dropped from sys.modules first, since labkit.paths reads the environment once, at
import), then runs labkit's `__main__` as `python -m labkit doctor` does; its exit status and
everything written to its stdout and stderr file descriptors (a traceback included) are
recorded. torch, transformers, peft, trl, ... are imported once for all cases: that import is most
of a doctor run (about 5 s of CPU).
"""
from __future__ import annotations

import json
import os
import runpy
import sys
import tempfile
import traceback


def run(case: dict) -> tuple[int, str]:
    for name in [k for k in os.environ if k.startswith("LABKIT_")]:
        del os.environ[name]
    os.environ.update(case["env"])
    os.chdir(case["cwd"])
    for name in [m for m in sys.modules if m == "labkit" or m.startswith("labkit.")]:
        del sys.modules[name]
    sys.argv = ["labkit", "doctor"]
    # file descriptors 1 and 2 point at one file for the case, as a subprocess's pipes would: it
    # catches what a logging handler made by an earlier case, or C code, writes too
    with tempfile.TemporaryFile("w+") as output:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
        try:
            runpy.run_module("labkit", run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
            if not isinstance(exit_.code, (int, type(None))):
                print(exit_.code, file=sys.stderr)
        except BaseException:  # as the interpreter would: the traceback in the output, status 1
            traceback.print_exc()
            status = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
        output.seek(0)
        return status, output.read()


if __name__ == "__main__":
    print(json.dumps([run(case) for case in json.load(sys.stdin)]))
