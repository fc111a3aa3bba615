"""`python -m voting {vote,self-consistency,score,report,submit} ...`: see `--help` and voting/__init__.py.

Every command prints one JSON summary line on stdout; bad input exits 2 with one message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.fileio import atomic_open
from voting import VotingError, first_items
from voting.extract import (
    TASKS,
    Predictions,
    Task,
    aligned_predictions,
    labels_or_error,
    read_csv_frame,
    read_dataset_json,
    read_gold,
    read_predictions_csv,
    report_unparsed,
    task_from_args,
)
from voting.rules import DECIDED_BY, NO_VOTE, VoteResult, ensemble_vote, self_consistency_vote
from voting.score import is_closed_set, label_metrics, metrics_by_group, plot_confusion, text_metrics
from voting.submit import SUBMITTERS, labels_by_id, submission_path

POLICY = """tie rule: the label with the strictly highest (weighted) count wins; a tie goes to the tie-breaker's
label, even when its own label is not among the tied ones. Four equal models: 3/4 and 2-1-1 win, 2-2 and 1-1-1-1
go to the tie-breaker. Unparsed text abstains; when the tie-breaker abstains where needed, the others' plurality
decides (a tie among them: the first tied label in the task's label order); a row nobody parsed is an error
unless --unparsed LABEL."""


def add_task_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("labels (how `prediction` text becomes a label; default: the stripped text)")
    group.add_argument("--task", choices=sorted(TASKS), help="the task's label set and extraction rule")
    group.add_argument("--labels", help="a closed label set, comma-separated, e.g. 1,2,3,4,5")
    group.add_argument("--text", action="store_true", help="free-text answers (exact match and char F1 in score)")


def add_vote_options(parser: argparse.ArgumentParser, tie_breaker_required: bool) -> None:
    parser.add_argument("--tie-breaker", required=tie_breaker_required, metavar="NAME",
                        help="the stem of the file whose label breaks ties" +
                        ("" if tie_breaker_required else " (default: the first file)"))
    parser.add_argument("--weights", metavar="a=2,b=1", help="vote weights by file stem; unnamed files weigh 1")
    parser.add_argument("--soft", action="store_true", help="average the prob_<label> columns instead of counting")
    parser.add_argument("--group-col", metavar="COL", help="column naming each row's group (e.g. dimension)")
    parser.add_argument("--tie-breaker-only", metavar="VALUE", action="append", default=[],
                        help="rows of this group take the tie-breaker's label directly (repeatable)")
    parser.add_argument("--groups", metavar="FILE", help="CSV id,COL giving the groups (default: COL of the "
                        "tie-breaker's file)")
    parser.add_argument("--unparsed", metavar="LABEL", help="label for rows on which no model's text parsed "
                        "(default: such rows are an error)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m voting", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    vote = commands.add_parser("vote", help="N-way plurality with a tie-breaker", epilog=POLICY)
    vote.add_argument("files", nargs="+", help="predictions CSVs (id,prediction[,prob_*][,extras])")
    vote.add_argument("--out", required=True, help="the voted predictions CSV")
    add_vote_options(vote, tie_breaker_required=True)
    add_task_options(vote)

    sc = commands.add_parser("self-consistency", help="most frequent of one model's N samples per id",
                             epilog="tie rule: among tied answers, the one first in sample order "
                             "(the sample column, numerically when integer, else file order)")
    sc.add_argument("samples", help="CSV id,prediction[,sample] with several rows per id")
    sc.add_argument("--out", required=True)
    sc.add_argument("--unparsed", metavar="LABEL", help="label for ids with no parsed sample (default: an error)")
    add_task_options(sc)

    score = commands.add_parser("score", help="accuracy, macro-F1, MCC, MAE (or exact match, char F1)")
    score.add_argument("--pred", required=True)
    score.add_argument("--gold", required=True, help="CSV id,label or an adapter dataset JSON (id, output)")
    score.add_argument("--plot", metavar="FILE.png", help="draw the confusion matrix")
    add_task_options(score)

    report = commands.add_parser("report", help="models and ensemble side by side (Markdown + PNG)", epilog=POLICY)
    report.add_argument("files", nargs="+")
    report.add_argument("--gold", required=True)
    report.add_argument("--out", required=True, metavar="DIR")
    add_vote_options(report, tie_breaker_required=False)
    add_task_options(report)

    submit = commands.add_parser("submit", help="a submission in the competition's own format")
    submit.add_argument("submit_task", metavar="TASK", choices=sorted(SUBMITTERS), help=", ".join(SUBMITTERS))
    submit.add_argument("--pred", required=True, help="the (voted) predictions CSV")
    submit.add_argument("--test", required=True, help="the adapter's test dataset JSON (id, instruction, input, "
                        "output[, dimension])")
    submit.add_argument("--out", required=True, metavar="PATH_OR_DIR")
    submit.add_argument("--source", help="logic: the original test JSONL whose answers to fill")
    submit.add_argument("--keywords", metavar="KW.csv", help="paper: id,prediction with each abstract's keywords")
    submit.add_argument("--unparsed", metavar="LABEL", help="label written for unparsed predictions "
                        "(default: an error)")
    return parser


def parse_weights(text: str | None, names: Sequence[str]) -> list[float] | None:
    if not text:
        return None
    weights = dict.fromkeys(names, 1.0)
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in weights:
            raise VotingError(f"--weights {text}: {item!r} is not NAME=NUMBER with NAME one of {', '.join(names)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise VotingError(f"--weights {text}: {value!r} for {name} is not a number") from None
        if not weights[name] > 0:
            raise VotingError(f"--weights {text}: the weight of {name} must be positive")
    return [weights[name] for name in names]


def read_group_map(path: str | None, column: str | None) -> dict[str, str] | None:
    if not path:
        return None
    if not column:
        raise VotingError("--groups needs --group-col COL (the column of the groups file to read)")
    frame = read_csv_frame(path, ("id", column))
    return dict(zip(frame["id"], frame[column], strict=True))


def run_vote(args: argparse.Namespace, task: Task) -> tuple[list[Predictions], np.ndarray, VoteResult, dict]:
    """Read, check and vote the files as the options say: (aligned files, voted labels, result, unparsed counts)."""
    names = [Path(path).stem for path in args.files]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise VotingError(f"files share the stem {', '.join(repeated)}: each model needs its own file name")
    tie_breaker = args.tie_breaker or names[0]
    if tie_breaker not in names:
        raise VotingError(f"--tie-breaker {tie_breaker} matches no file: the files are {', '.join(args.files)}")
    if args.tie_breaker_only and not args.group_col:
        raise VotingError("--tie-breaker-only needs --group-col COL")
    group_map = read_group_map(args.groups, args.group_col)
    tb_index = names.index(tie_breaker)
    # A file without the task's group column (judge: dimension) reads it from --groups, else the tie-breaker's file.
    dimensions = group_map if group_map is not None and args.group_col == task.group_col else None
    tb_file = read_predictions_csv(args.files[tb_index], task, dimensions)
    if dimensions is None and tb_file.groups is not None:
        dimensions = dict(zip(tb_file.ids, tb_file.groups, strict=True))
    files = [tb_file if i == tb_index else read_predictions_csv(path, task, dimensions)
             for i, path in enumerate(args.files)]
    files = aligned_predictions(files)
    unparsed = {f.name: report_unparsed(f) for f in files}
    label_order = list(task.labels) if task.labels else sorted(
        {x for f in files for x in f.labels if x is not None} | (set(files[0].prob_labels) if args.soft else set()))
    if args.unparsed is not None and args.unparsed not in label_order:
        if task.labels:
            raise VotingError(f"--unparsed {args.unparsed}: not a {task.name} label ({', '.join(label_order)})")
        label_order.append(args.unparsed)
    tie_breaker_only = None
    if args.tie_breaker_only:
        if group_map is not None:
            missing = [i for i in files[0].ids if i not in group_map]
            if missing:
                raise VotingError(f"{args.groups}: no {args.group_col} for {len(missing)} ids ({first_items(missing)})")
            row_groups = np.array([group_map[i] for i in files[0].ids], dtype=object)
        elif args.group_col in files[tb_index].frame.columns:
            row_groups = files[tb_index].frame[args.group_col].to_numpy(dtype=object)
        else:
            raise VotingError(f"{files[tb_index].path}: no {args.group_col} column for --group-col (or give "
                              f"--groups FILE with id,{args.group_col})")
        tie_breaker_only = np.isin(row_groups, args.tie_breaker_only)
    probs = None
    if args.soft:
        probs = soft_probabilities(files, label_order)
    weights = parse_weights(args.weights, names)
    voted, result = ensemble_vote([f.labels for f in files], label_order, tb_index, weights, probs,
                                  tie_breaker_only, args.unparsed)
    no_vote = result.decided_by == NO_VOTE
    if no_vote.any():
        raise VotingError(f"{', '.join(args.files)}: no model's text parsed on {int(no_vote.sum())} rows, ids "
                          f"{first_items(files[0].ids[no_vote])}; fix them or give --unparsed LABEL")
    return files, voted, result, unparsed


def soft_probabilities(files: Sequence[Predictions], label_order: Sequence[str]) -> np.ndarray:
    """(models, rows, labels) probabilities; every file must have the same prob_ columns, all naming labels."""
    reference = files[0].prob_labels
    if not reference:
        raise VotingError(f"{files[0].path}: --soft needs prob_<label> columns, found none")
    for f in files:
        if set(f.prob_labels) != set(reference):
            raise VotingError(f"{files[0].path} and {f.path} have different prob_ columns: "
                              f"{', '.join(sorted(reference))} vs {', '.join(sorted(f.prob_labels))}")
        outside = [label for label in f.prob_labels if label not in label_order]
        if outside:
            raise VotingError(f"{f.path}: prob_{outside[0]} names no label of the task ({', '.join(label_order)})")
    return np.stack([f.probabilities(label_order) for f in files])


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")


def command_vote(args: argparse.Namespace, task: Task) -> dict:
    files, voted, result, unparsed = run_vote(args, task)
    tie_breaker = files[[f.name for f in files].index(args.tie_breaker)]
    out = pd.DataFrame({"id": files[0].ids, "prediction": voted,
                        "decided_by": np.array(DECIDED_BY, dtype=object)[result.decided_by]})
    for column in tie_breaker.extra_columns:
        if column not in out.columns:
            out[column] = tie_breaker.frame[column].to_numpy()
    write_csv(out, args.out)
    return {"out": args.out, "n": len(out), "models": [f.name for f in files], "tie_breaker": args.tie_breaker,
            "decided_by": result.decided_by_counts(), "unparsed": unparsed}


def command_self_consistency(args: argparse.Namespace, task: Task) -> dict:
    path = Path(args.samples)
    frame = read_csv_frame(path, ("id", "prediction"), unique_ids=False)
    if "sample" in frame.columns:
        numbers = pd.to_numeric(frame["sample"], errors="coerce")
        if numbers.notna().all():
            frame = frame.iloc[np.argsort(numbers.to_numpy(), kind="stable")].reset_index(drop=True)
    row_groups = frame[task.group_col].to_numpy(dtype=object) if task.group_col in frame.columns else None
    labels = labels_or_error(path, frame, "prediction", task, row_groups)
    n_unparsed = int(sum(label is None for label in labels))
    if n_unparsed:
        print(f"{path}: {n_unparsed} of {len(labels)} samples unparsed (they abstain)", file=sys.stderr)
    voted = self_consistency_vote(frame["id"].to_numpy(dtype=object), labels)
    empty = voted["prediction"].isna()
    if empty.any():
        if args.unparsed is None:
            raise VotingError(f"{path}: no sample parsed for {int(empty.sum())} ids ({first_items(voted.index[empty])})"
                              "; fix them or give --unparsed LABEL")
        if task.labels and args.unparsed not in task.labels:
            raise VotingError(f"--unparsed {args.unparsed}: not a {task.name} label ({', '.join(task.labels)})")
        voted.loc[empty, "prediction"] = args.unparsed
    out = voted.reset_index()
    extras = [c for c in frame.columns if c not in ("id", "prediction", "sample") and not c.startswith("prob_")]
    if extras:
        first_rows = frame.drop_duplicates("id").set_index("id")
        for column in extras:
            out[column] = first_rows[column].reindex(out["id"]).to_numpy()
    write_csv(out, args.out)
    return {"out": args.out, "ids": len(out), "samples": len(frame), "unparsed_samples": n_unparsed,
            "ties": int(out["tied"].sum()), "filled_unparsed": int(empty.sum())}


def text_scoring(task: Task, gold: Predictions) -> bool:
    """Free-text metrics for qa/keywords/--text, and with no --task when gold is not a small closed set."""
    return task.free_text and (task.name != "raw" or not is_closed_set(list(gold.labels)))


def command_score(args: argparse.Namespace, task: Task) -> dict:
    gold = read_gold(args.gold, task)
    dimensions = dict(zip(gold.ids, gold.groups, strict=True)) if gold.groups is not None else None
    pred = read_predictions_csv(args.pred, task, dimensions)
    gold, pred = aligned_predictions([gold, pred])
    report_unparsed(pred)
    result = {"pred": args.pred, "gold": args.gold}
    if text_scoring(task, gold):
        result.update(text_metrics(list(gold.labels), list(pred.labels)))
        if args.plot:
            print("--plot: no confusion matrix for free-text answers; nothing drawn", file=sys.stderr)
        return result
    numeric = task.numeric if task.labels else None
    result.update(label_metrics(list(gold.labels), list(pred.labels), task.labels, numeric))
    groups = gold.groups if gold.groups is not None else pred.groups
    if groups is not None:
        result["by_group"] = metrics_by_group(list(gold.labels), list(pred.labels), groups,
                                              label_order=task.labels, numeric=numeric)
    if args.plot:
        plot_confusion(result["confusion"], result["labels"], args.plot, title=Path(args.pred).stem)
        result["plot"] = args.plot
    return result


def command_report(args: argparse.Namespace, task: Task) -> dict:
    from voting.report import ensemble_report, write_report

    args.tie_breaker = args.tie_breaker or Path(args.files[0]).stem
    gold = read_gold(args.gold, task)
    files, voted, result, _ = run_vote(args, task)
    aligned = aligned_predictions([gold, *files])  # same ids as gold, rows in gold's order
    order = pd.Index(files[0].ids).get_indexer(aligned[0].ids)
    reordered = VoteResult(result.winner[order], result.decided_by[order])
    report = ensemble_report(aligned[1:], aligned[0], voted[order], reordered, args.tie_breaker,
                             text_scoring(task, gold), task.labels, task.numeric if task.labels else None)
    paths = write_report(report, args.out)
    ensemble = report["scores"]["ensemble"]
    return {"out": [str(p) for p in paths], "tie_breaker": args.tie_breaker,
            "ensemble": {k: v for k, v in ensemble.items() if k not in ("labels", "confusion")},
            "tie_breaker_decided": report["tie_breaker_decided"]}


def command_submit(args: argparse.Namespace, _task: Task) -> dict:
    name = args.submit_task
    task = TASKS[name]
    records = read_dataset_json(args.test)
    labels = labels_by_id(args.pred, task, records, args.unparsed)
    keywords = labels_by_id(args.keywords, TASKS["keywords"], records) if args.keywords else None
    path = submission_path(args.out, name)
    summary = SUBMITTERS[name](path, records, labels, task=task, source=args.source, keywords=keywords)
    return {"task": name, "out": str(path), **summary}


COMMANDS = {"vote": command_vote, "self-consistency": command_self_consistency, "score": command_score,
            "report": command_report, "submit": command_submit}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        task = task_from_args(getattr(args, "task", None), getattr(args, "labels", None), getattr(args, "text", False))
        summary = COMMANDS[args.command](args, task)
    except VotingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError) as err:
        print(f"error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
