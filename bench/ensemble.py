"""Fitted ensembles against their best single member, on real data (issue #23 part 4): every method of
`make fit-ensemble` (each member alone, plurality — the seed's four-way rule for any number of voters —, soft vote,
greedy and Powell weights, stacked logistic regression, ordinal cut points where labels are numbers) compared

- on the out-of-fold rows by nested cross-validation (voting.fit.nested_cv: each fold predicted by a fit on the other
  folds' OOF rows only), and
- where the members' cv files of a labelled split exist (`make cv ... SPLIT=dev`), on that split: each method fitted
  on every OOF row, applied to the fold models' averaged probabilities of the split,

each with its bootstrap 95% interval and the margin over the best single member with a paired bootstrap interval
(the same resampled rows for every method; the best member is chosen on the rows being scored, which favours it).
A member's raw label scores can collapse to one class (CoLA: MCC 0) while a fitted method recalibrates them, so the
margin is also given over the best *calibrated* member: "M alone, stacked", the stacked method fitted on that one
member's probabilities — what a combination adds beyond recalibrating its best member (`vs_calibrated`).

    .venv/bin/python bench/ensemble.py --task cola [--data-dir data] [--split dev] [--members smollm2,gemma3,tfidf]

The OOF and cv files come from `make cv` (docs/ensembles.md gives the commands; the figures in docs/measured.md say
which rows and folds). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from core.paths import predictions_dir
from core.tasks import get_task
from voting.fit import Context, apply_method, bootstrap, fit_method, methods_for, nested_cv, predict
from voting.fit_files import CV_SUFFIX, OOF_SUFFIX, candidate_mask, read_oof
from voting.predictions import aligned_predictions, read_gold, read_predictions_csv


def split_arrays(oof, task, gold_path: Path, cv_paths: list[Path]):
    """(P, mask, y) of the split's cv files, members in the OOF's order, rows in gold's order."""
    gold = read_gold(gold_path, task)
    groups = dict(zip(gold.ids, gold.groups, strict=True)) if gold.groups is not None else None
    aligned = aligned_predictions([gold, *(read_predictions_csv(p, task, groups) for p in cv_paths)])
    gold, files = aligned[0], aligned[1:]
    labels = oof.ctx.labels
    P = np.nan_to_num(np.stack([f.probabilities(labels) for f in files]))
    y = np.array([labels.index(label) for label in gold.labels])
    return P, candidate_mask(gold_path, gold.ids, gold.groups, task), y


def alone(ctx: Context, m: int) -> tuple[str, Context]:
    return f"{ctx.names[m]} alone, stacked", Context([ctx.names[m]], ctx.labels, ctx.metric)


def figures(codes: dict[str, np.ndarray], y: np.ndarray, ctx: Context, seed: int) -> dict:
    """bootstrap() against the best raw member, plus each method's margin over the best calibrated member."""
    out = bootstrap(codes, y, ctx, seed)
    calibrated = [alone(ctx, m)[0] for m in range(len(ctx.names))]
    vs = bootstrap(codes, y, Context(calibrated, ctx.labels, ctx.metric), seed)
    out["best_calibrated"] = vs["best_member"]
    for name, figure in out["methods"].items():
        figure["vs_calibrated"] = vs["methods"][name]["margin"]
        figure["vs_calibrated_ci95"] = vs["methods"][name]["margin_ci95"]
    return out


def markdown(result: dict) -> str:
    """The figures as one table: each method's metric with its interval, on nested CV and on the split, and its
    margins over the best raw and the best calibrated member with their paired intervals."""
    parts = [part for part in ("nested_cv", *(k for k in result if k not in ("nested_cv",))) if part in result]
    parts = [p for p in parts if isinstance(result[p], dict) and "methods" in result[p]]

    def cell(figure: dict, key: str) -> str:
        low, high = figure[f"{key}_ci95" if key != "metric" else "ci95"]
        sign = "+" if key != "metric" else ""
        return f"{figure[key]:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"

    head = ["method"]
    for part in parts:
        rows = result[part].get("rows", result.get("oof_rows"))
        head += [f"{part} {result['metric']} ({rows} rows)", "− best member", "− best calibrated"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in result[parts[0]]["methods"]:
        row = [name]
        for part in parts:
            figure = result[part]["methods"][name]
            row += [cell(figure, "metric"), cell(figure, "margin"), cell(figure, "vs_calibrated")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="the dataset name (predictions/TASK/*_oof.csv)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--split", default="dev", help="the labelled split of the cv files (default dev)")
    parser.add_argument("--members", help="comma-separated member names (default: every *_oof.csv)")
    parser.add_argument("--metric", help="default: the task's (voting.fit.default_metric)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, help="also write the figures as a Markdown table to this file")
    args = parser.parse_args(argv)

    info = json.loads((args.data_dir / "dataset_info.json").read_text(encoding="utf-8"))
    task = get_task(info[f"{args.task}_train"].get("task", args.task))
    folder = predictions_dir(args.task)
    if args.members:
        paths = [folder / f"{name}{OOF_SUFFIX}.csv" for name in args.members.split(",")]
    else:
        paths = sorted(folder.glob(f"*{OOF_SUFFIX}.csv"))
    started = time.perf_counter()
    oof = read_oof(paths, args.data_dir / f"{args.task}_train.json", task, args.metric)
    codes = nested_cv(oof.P, oof.mask, oof.y, oof.folds, oof.ctx)
    for m in range(len(oof.ctx.names)):
        name, ctx = alone(oof.ctx, m)
        codes[name] = nested_cv(oof.P[m : m + 1], oof.mask, oof.y, oof.folds, ctx)["stacked"]
    nested = figures(codes, oof.y, oof.ctx, args.seed)
    result: dict = {
        "bench": "ensemble",
        "task": args.task,
        "metric": oof.ctx.metric,
        "members": oof.ctx.names,
        "oof_rows": len(oof.y),
        "folds": len(np.unique(oof.folds)),
        "nested_cv": nested,
    }
    split_dir = predictions_dir(args.task, args.split)
    cv_paths = [split_dir / f"{name}{CV_SUFFIX}.csv" for name in oof.ctx.names]
    gold_path = args.data_dir / f"{args.task}_{args.split}.json"
    if all(p.is_file() for p in cv_paths) and gold_path.is_file():
        P, mask, y = split_arrays(oof, task, gold_path, cv_paths)
        codes = {}
        for name in methods_for(oof.ctx, oof.mask):
            params = fit_method(name, oof.P, oof.mask, oof.y, oof.ctx)
            codes[name] = predict(apply_method(name, params, P, mask, oof.ctx), mask)
        for m in range(len(oof.ctx.names)):
            name, ctx = alone(oof.ctx, m)
            params = fit_method("stacked", oof.P[m : m + 1], oof.mask, oof.y, ctx)
            codes[name] = predict(apply_method("stacked", params, P[m : m + 1], mask, ctx), mask)
        result[args.split] = {"rows": len(y), **figures(codes, y, oof.ctx, args.seed)}
    else:
        missing = [str(p) for p in [*cv_paths, gold_path] if not p.is_file()]
        print(f"[bench] no {args.split} figures: missing {', '.join(missing)}", file=sys.stderr)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(result), encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
