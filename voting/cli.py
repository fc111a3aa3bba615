"""`python -m voting {vote,self-consistency,score,report,submit} ...`: see `--help` and voting/__init__.py.

Every command prints one JSON summary line on stdout; bad input exits 2 with one message on stderr. `--task` takes a
registered task (judge, cola, qqp, logic, paper, keywords, qa) or a dataset name whose task the adapter recorded in
DATA/dataset_info.json (`--task gk` → qa).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from core import InputError, positive_int
from core.fileio import atomic_write_frame, formula_safe_frame
from core.origin import check_made_from, check_split, common_origin, copy_origin, read_origin
from core.paths import submissions_dir
from core.tasks import RAW, TEXT, TaskSpec, find_task, labels_task
from voting import VotingError, check_outputs, require_path
from voting.ensemble import VoteOptions, parse_share, self_consistency, vote_files, voted_frame
from voting.fit_files import fit_ensemble, vote_ensemble
from voting.predictions import read_dataset_json
from voting.report import REPORT_FILES, report_files, score_file
from voting.submit import clear_submission, cleared_on_failure, labels_by_id, write_submission
from voting.track import record_command

POLICY = """tie rule: the label with the strictly highest (weighted) count wins; a tie goes to the tie-breaker's
label, even when its own label is not among the tied ones. Four equal models: 3/4 and 2-1-1 win, 2-2 and 1-1-1-1
go to the tie-breaker. Unparsed text abstains; when the tie-breaker abstains where needed, the others' plurality
decides (a tie among them: the first tied label in the task's label order); a row nobody parsed is an error
unless --unparsed LABEL. The task's tie-breaker-only groups (judge: 选择题) take the tie-breaker's label."""


def add_task_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("labels (how `prediction` text becomes a label; default: the stripped text)")
    group.add_argument("--task", metavar="TASK", help="a registered task or a dataset name (its recorded task)")
    group.add_argument("--labels", help="a closed label set, comma-separated, e.g. 1,2,3,4,5")
    group.add_argument("--text", action="store_true", help="free-text answers (exact match and char F1 in score)")
    group.add_argument("--data-dir", default="data", help="where DATA/dataset_info.json records dataset tasks")


def add_vote_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tie-breaker",
        metavar="NAME",
        help="the stem of the file whose label breaks ties (default: "
        "glm4 where its file is given, else the file most accurate on the labelled rows of --gold)",
    )
    parser.add_argument("--weights", metavar="a=2,b=1", help="vote weights by file stem; unnamed files weigh 1")
    parser.add_argument("--soft", action="store_true", help="average the prob_<label> columns instead of counting")
    parser.add_argument(
        "--tie-breaker-only",
        metavar="GROUP",
        action="append",
        help="rows of this group take the tie-breaker's label (repeatable; default: the task's own, judge: 选择题)",
    )
    parser.add_argument(
        "--groups",
        metavar="FILE",
        help="CSV with id and the task's group column, for files without it (default: the tie-breaker's file)",
    )
    parser.add_argument(
        "--unparsed",
        metavar="LABEL",
        help="label for rows on which no model's text parsed (default: such rows are an error)",
    )
    parser.add_argument(
        "--max-unparsed",
        metavar="SHARE",
        default="5%",
        type=parse_share,
        help="stop when a model's predictions abstain (unparsed or outside the labels) on more than "
        "this share of rows (default 5%%); below it they abstain and are counted",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m voting", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    vote = commands.add_parser("vote", help="N-way plurality with a tie-breaker", epilog=POLICY)
    vote.add_argument("files", nargs="*", help="predictions CSVs (id,prediction[,prob_*][,extras])")
    vote.add_argument("--out", required=True, help="the voted predictions CSV")
    vote.add_argument(
        "--ensemble",
        metavar="ENSEMBLE.json",
        help="apply a fitted ensemble (llmcomp ensemble fit) to its members' cv files instead of voting FILES",
    )
    vote.add_argument(
        "--split",
        default="test",
        help="with --ensemble: the split whose cv files the members have (make cv SPLIT=; default test)",
    )
    vote.add_argument("--gold", help="labelled records (or CSV id,label) to pick the default tie-breaker by")
    add_vote_options(vote)
    add_task_options(vote)

    sc = commands.add_parser(
        "self-consistency",
        help="most frequent of one model's N samples per id",
        epilog="tie rule: among tied answers, the one first in sample order "
        "(the sample column, numerically when integer, else file order)",
    )
    sc.add_argument("samples", help="CSV id,prediction[,sample] with several rows per id")
    sc.add_argument("--out", required=True)
    sc.add_argument("--unparsed", metavar="LABEL", help="label for ids with no parsed sample (default: an error)")
    add_task_options(sc)

    score = commands.add_parser(
        "metrics", aliases=["score"], help="accuracy, macro-F1, MCC, MAE (or exact match, char F1); `score`: old name"
    )
    score.add_argument("--pred", required=True)
    score.add_argument("--gold", required=True, help="CSV id,label or an adapter dataset JSON (id, output)")
    score.add_argument("--plot", metavar="FILE.png", help="draw the confusion matrix")
    add_task_options(score)

    report = commands.add_parser("report", help="models and ensemble side by side (Markdown + PNG)", epilog=POLICY)
    report.add_argument("files", nargs="+")
    report.add_argument("--gold", required=True)
    report.add_argument("--out", required=True, metavar="DIR")
    add_vote_options(report)
    add_task_options(report)

    ensemble = commands.add_parser("ensemble", help="fit an ensemble on out-of-fold files (make fit-ensemble)")
    fit = ensemble.add_subparsers(dest="action", required=True).add_parser(
        "fit",
        help="compare members, plurality, soft, fitted weights, stacking (and ordinal cut points) by nested CV",
        description="every figure by nested cross-validation over the OOF files' folds, with bootstrap 95% "
        "intervals and the paired margin over the best member; the methods: voting/fit.py",
    )
    fit.add_argument("files", nargs="+", help="OOF files predictions/TASK/MODEL_oof.csv (id,fold,prediction,prob_*)")
    fit.add_argument("--gold", help="the labelled train records (default DATA/TASK_train.json)")
    fit.add_argument("--out", help="the fitted ensemble (default submissions/TASK/ensemble.json)")
    fit.add_argument("--report", metavar="DIR", help="report.md/.png/.json (default submissions/TASK/ensemble/)")
    fit.add_argument("--metric", help="accuracy, mcc, macro_f1, mae, qwk (default: MCC for 2 labels, QWK ordinal)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    add_task_options(fit)

    submit = commands.add_parser("submit", help="a submission in the competition's own format")
    submit.add_argument(
        "--task",
        help="a task with a submission format (judge, cola, qqp, "
        "logic, paper, qa) or a dataset name whose task the adapter recorded",
    )
    submit.add_argument("submit_task", nargs="?", metavar="TASK", help="the old spelling of --task (one release)")
    submit.add_argument("--data-dir", default="data", help="where dataset_info.json names each dataset's task")
    submit.add_argument("--pred", help="the (voted) predictions CSV (required unless --clear)")
    submit.add_argument(
        "--test", help="the adapter's test dataset JSON (id, instruction, input, output[, dimension]; unless --clear)"
    )
    submit.add_argument("--out", required=True, metavar="PATH_OR_DIR")
    submit.add_argument("--source", help="logic: the original test JSONL whose answers to fill")
    submit.add_argument("--keywords", metavar="KW.csv", help="paper: id,prediction with each abstract's keywords")
    submit.add_argument(
        "--unparsed", metavar="LABEL", help="label written for unparsed predictions (default: an error)"
    )
    submit.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="a trial's N records of the test file (LIMIT=N: every group of the task, the rows each stage took; "
        "the file is partial)",
    )
    submit.add_argument(
        "--clear",
        action="store_true",
        help="only remove the task's submission files from --out (an earlier run's: logic's upload.jsonl and "
        "answer.txt), so a pipeline that fails before submit leaves none that look current",
    )
    return parser


def task_from_args(args: argparse.Namespace) -> TaskSpec:
    """The TaskSpec the options name: `--task NAME` (a task or a dataset), `--labels 1,2,3`, `--text`, or RAW."""
    task, labels, text = getattr(args, "task", None), getattr(args, "labels", None), getattr(args, "text", False)
    if sum(bool(option) for option in (task, labels, text)) > 1:
        raise VotingError("give only one of --task, --labels, --text")
    if task:
        return find_task(task, args.data_dir)
    if labels:
        return labels_task(labels)
    return TEXT if text else RAW


def vote_options(args: argparse.Namespace) -> VoteOptions:
    return VoteOptions(
        args.tie_breaker,
        args.weights,
        args.soft,
        args.groups,
        args.tie_breaker_only,
        args.unparsed,
        args.max_unparsed,
        getattr(args, "gold", None),
    )


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    atomic_write_frame(path, formula_safe_frame(frame))  # formula-safe: voted files get opened in spreadsheets


def command_vote(args: argparse.Namespace, task: TaskSpec) -> dict:
    check_outputs("--out", args.out, [args.out], [*args.files, args.gold, args.groups, args.ensemble])
    if args.ensemble:
        if args.files:
            raise VotingError("vote --ensemble applies to the members' own cv files: give no FILES with it")
        return vote_ensemble(args.ensemble, task, args.out, args.split)
    if not args.files:
        raise VotingError("vote: give the predictions files, or --ensemble ENSEMBLE.json")
    origin = common_origin(args.files)  # members made from different splits or trials are refused
    vote = vote_files(args.files, task, vote_options(args))
    out = voted_frame(vote)
    write_csv(out, args.out)
    if origin is not None:
        copy_origin(origin, args.out, f"vote of {', '.join(f.name for f in vote.files)}")
    return {
        "out": args.out,
        "n": len(out),
        "models": [f.name for f in vote.files],
        "tie_breaker": vote.tie_breaker,
        "tie_breaker_why": vote.tie_breaker_why,
        "decided_by": vote.result.decided_by_counts(),
        "unparsed": vote.unparsed,
    }


def command_self_consistency(args: argparse.Namespace, task: TaskSpec) -> dict:
    check_outputs("--out", args.out, [args.out], [args.samples])
    out, summary = self_consistency(args.samples, task, args.unparsed)
    write_csv(out, args.out)
    if (origin := read_origin(args.samples)) is not None:
        copy_origin(origin, args.out, f"self-consistency vote of {args.samples}")
    return {"out": args.out, **summary}


def command_score(args: argparse.Namespace, task: TaskSpec) -> dict:
    if args.plot is not None:
        check_outputs("--plot", args.plot, [args.plot], [args.pred, args.gold])
    return score_file(args.pred, args.gold, task, args.plot)


def command_report(args: argparse.Namespace, task: TaskSpec) -> dict:
    written = [Path(require_path("--out", args.out)) / name for name in REPORT_FILES]
    check_outputs("--out", args.out, written, [*args.files, args.gold, args.groups])
    common_origin(args.files)
    if str(args.gold).endswith(".json"):  # an adapter dataset: every file must be made from it
        check_made_from(args.files, args.gold)
    return report_files(args.files, args.gold, task, vote_options(args), args.out)


def command_ensemble(args: argparse.Namespace, task: TaskSpec) -> dict:
    if not args.task:
        raise VotingError("ensemble fit: give --task TASK (the dataset whose folds the OOF files hold)")
    data_dir = Path(args.data_dir)
    gold = args.gold or str(data_dir / f"{args.task}_train.json")
    out = args.out or str(submissions_dir(args.task) / "ensemble.json")
    report = args.report or str(Path(out).with_suffix(""))
    written = [out, *(Path(report) / name for name in ("report.json", "report.png", "report.md"))]
    check_outputs("--out", out, written, [*args.files, gold])
    return fit_ensemble(args.files, gold, task, out, report, args.metric, args.seed)


def command_submit(args: argparse.Namespace, _task: TaskSpec) -> dict:
    if args.submit_task:
        print(
            "note: `submit TASK` is now `submit --task TASK`; the positional form goes in the next release",
            file=sys.stderr,
        )
    if not (args.task or args.submit_task) or (args.task and args.submit_task and args.task != args.submit_task):
        raise VotingError("submit: give the task once, as --task TASK")
    task = find_task(args.task or args.submit_task, args.data_dir)
    written = task.submission_path(require_path("--out", args.out))
    if args.clear:
        return {"task": task.name, "removed": clear_submission(task, args.out)}
    missing = [flag for flag, value in (("--pred", args.pred), ("--test", args.test)) if not value]
    if missing:
        raise VotingError(f"submit: give {' and '.join(missing)} (or --clear to only remove old files)")
    check_outputs("--out", args.out, [written], [args.pred, args.test, args.source, args.keywords])
    with cleared_on_failure(task, args.out):  # the inputs are checked first: a bad file clears the old submission too
        check_made_from([args.pred], args.test, args.limit)
        keywords = None
        if args.keywords:  # paper: a paper with no keywords predicted is written with empty Keywords, and counted
            origin = read_origin(args.pred)
            split = origin["split"] if origin else Path(args.test).stem.rsplit("_", 1)[-1]
            check_split(args.keywords, split, args.limit)
            keywords_task = find_task(task.extra_tasks["keywords"]) if "keywords" in task.extra_tasks else TEXT
            keywords = labels_by_id(args.keywords, keywords_task, read_dataset_json(args.test), unparsed="")
    return write_submission(
        task, args.pred, args.test, args.out, args.unparsed, args.limit, source=args.source, keywords=keywords
    )


COMMANDS = {
    "vote": command_vote,
    "self-consistency": command_self_consistency,
    "metrics": command_score,
    "score": command_score,
    "report": command_report,
    "submit": command_submit,
    "ensemble": command_ensemble,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "score":
        print(
            "note: `voting score` is now `voting metrics` (llmcomp metrics); the old name goes in the next release",
            file=sys.stderr,
        )
    start = time.time()
    try:
        summary = COMMANDS[args.command](args, task_from_args(args))
    except InputError as err:  # VotingError, TaskError
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError) as err:
        print(f"error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    print(json.dumps(summary, ensure_ascii=False), flush=True)
    record_command(args.command, args, summary, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
