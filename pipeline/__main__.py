"""python -m pipeline {train,qlora,predict,export} --model MODEL --task TASK [key=value ...]

The task's datasets are TASK_train / TASK_test in data/dataset_info.json (written by `python -m adapters`).
Extra key=value pairs are LLaMA-Factory overrides, applied last.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.fileio import atomic_write_csv
from pipeline.runs import RunError, join_predictions, predicted_rows, run_stage


def predict(args: argparse.Namespace) -> None:
    out_csv = Path("predictions") / args.task / f"{args.model}.csv"
    test_json = Path(args.data_dir) / f"{args.task}_{args.split}.json"
    if args.samples <= 1:
        predict_dir = run_stage(args.model, "predict", args.task, args.overrides, dry_run=args.dry_run, split=args.split)
        if not args.dry_run:
            rows = join_predictions(predict_dir, test_json, out_csv)
            print(f"[predict] {rows} predictions → {out_csv}")
        return
    # Self-consistency: N sampled runs (seed i), gathered into one samples file with a `sample` column.
    samples: list[dict] = []
    for sample in range(args.samples):
        overrides = ["do_sample=true", f"temperature={args.temperature}", f"seed={sample}", *args.overrides]
        predict_dir = run_stage(args.model, "predict", args.task, overrides, dry_run=args.dry_run, split=args.split)
        if not args.dry_run:
            samples += [{"id": row["id"], "prediction": row["prediction"], "sample": sample}
                        for row in predicted_rows(predict_dir, test_json)]
    if not args.dry_run:
        out_csv = out_csv.with_name(f"{args.model}_samples.csv")
        atomic_write_csv(out_csv, samples)
        print(f"[predict] {args.samples} samples per id → {out_csv}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["train", "qlora", "predict", "export"])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--task", default="judge_demo")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--fresh", action="store_true", help="train: move the old run aside and start over")
    parser.add_argument("--split", default="test", help="predict: which split to predict (GLUE tasks use dev)")
    parser.add_argument("--samples", type=int, default=1, help="predict: N sampled answers per row")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--dry-run", action="store_true", help="print the resolved YAML, run nothing")
    parser.add_argument("overrides", nargs="*", help="LLaMA-Factory key=value overrides")
    args = parser.parse_intermixed_args(argv)
    try:
        if args.stage == "predict":
            predict(args)
        else:
            run_stage(args.model, args.stage, args.task, args.overrides, fresh=args.fresh, dry_run=args.dry_run)
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
