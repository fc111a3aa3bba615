"""python -m pipeline {train,qlora,predict,export} --model MODEL --task TASK [--data-dir DATA] [key=value ...]

The task's datasets are TASK_train / TASK_<split> in DATA/dataset_info.json (written by `python -m adapters`).
Extra key=value pairs are LLaMA-Factory overrides, applied last.
"""

from __future__ import annotations

import argparse
import sys

from core import InputError, positive_int
from pipeline.predict import predict
from pipeline.runs import RunError, run_stage, task_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage", choices=["train", "qlora", "predict", "export"])
    parser.add_argument(
        "--model",
        help="a factory_configs/ preset (default: the task's embedded CPU model, core/tasks.py EMBEDDED_MODEL)",
    )
    parser.add_argument("--task", default="judge_demo")
    parser.add_argument("--data-dir", help="the datasets' folder, LLaMA-Factory's dataset_dir (default data)")
    parser.add_argument("--fresh", action="store_true", help="train: move the old run aside and start over")
    parser.add_argument("--split", default="test", help="predict: which split to predict (GLUE tasks use dev)")
    parser.add_argument("--samples", type=int, default=1, help="predict: N sampled answers per row")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--limit", type=positive_int, metavar="N", help="predict: the first N rows only (a trial run)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved YAML, run nothing")
    parser.add_argument("overrides", nargs="*", help="LLaMA-Factory key=value overrides")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    args.model = task_model(args.model, args.task, args.data_dir)
    try:
        if args.stage == "predict":
            predict(
                args.model,
                args.task,
                args.overrides,
                args.split,
                args.samples,
                args.temperature,
                args.data_dir,
                args.dry_run,
                args.limit,
            )
        else:
            run_stage(
                args.model,
                args.stage,
                args.task,
                args.overrides,
                fresh=args.fresh,
                dry_run=args.dry_run,
                data_dir=args.data_dir,
            )
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except InputError as err:  # a bad --task/--model name, a file that cannot be written (OutputError)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a read-only or full saves/ folder: one line naming the path
        print(f"error: cannot write {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
