"""Label scoring: rank each row's candidate labels by their log-likelihood after exactly the prompt LoRA trained on.

    python -m pipeline.score --model smollm2 --task cola [--split test|dev] [--batch-size 16] [--calibrate]
                               [--labels a,b,c] [key=value ...]

writes predictions/TASK/MODEL_score.csv (`id,prediction,prob_<label>...[,group]`, softmax over the row's candidates)
and saves/TASK/MODEL/score/report.json (the LLaMA-Factory arguments, timings, calibration, metrics when the split
has labels). No generation: one forward pass per batch, nothing left unparsed.

The engine is pipeline/scoring_engine.py, the calibration pipeline/calibration.py; the CLI pipeline/score.py.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core import InputError
from core.fileio import atomic_write_csv, atomic_write_json
from core.paths import STAGE_DIRS
from core.records import describe_trial, trial_records
from core.tasks import TaskSpec, find_task, labels_task
from pipeline.calibration import apply_calibration, fit_calibration, softmax
from pipeline.checks import check_cutoff, check_model_reachable
from pipeline.errors import RunError
from pipeline.inference import infer_arguments, load_records
from pipeline.run import Run, stage_parser
from pipeline.scoring_engine import Encoded, LabelScorer, score_encoded
from pipeline.track import record_predictions


def scoring_task(run: Run, labels: str | None = None) -> TaskSpec:
    """The task whose labels are scored: `--labels a,b,c`, else the dataset's recorded task (or a task name)."""
    if labels:
        return labels_task(labels)
    spec = run.spec or find_task(run.task, run.data_dir)  # no recorded task: find_task says what was looked for
    if spec.free_text:
        raise RunError(
            f"task {spec.name} ({run.task}) has free-text answers: label scoring needs a label set; "
            "give --labels a,b,c or predict by generation"
        )
    return spec


def label_sets(records: Sequence[dict], task: TaskSpec, where: str) -> list[tuple[str, ...]]:
    """Candidates per record; a labelled record whose output is not among its candidates is an error."""
    sets = [task.candidates(r) for r in records]
    for index, (record, labels) in enumerate(zip(records, sets, strict=True)):
        output = str(record.get("output", "")).strip()
        if output and output not in labels:
            raise RunError(
                f"{where} record {index} id {record.get('id')}: output is {output!r}, not one of the "
                f"candidates {', '.join(labels)}; give --labels a,b,c"
            )
    return sets


def prediction_rows(
    records: Sequence[dict], sets: Sequence[tuple[str, ...]], scores: Sequence[np.ndarray], task: TaskSpec
) -> list[dict]:
    """{id, prediction, prob_<label> for every label of the task (0 where not a candidate)[, the task's group]}."""
    all_labels = sorted({label for labels in sets for label in labels}, key=lambda x: (len(x), x))  # as baseline
    rows = []
    for record, labels, s in zip(records, sets, scores, strict=True):
        probs = dict(zip(labels, softmax(np.asarray(s, dtype=float)), strict=True))
        row = {"id": record["id"], "prediction": labels[int(np.argmax(s))]}
        row.update({f"prob_{label}": round(float(probs.get(label, 0.0)), 6) for label in all_labels})
        if task.group_col and task.group_col in record:
            row[task.group_col] = record[task.group_col]
        rows.append(row)
    return rows


def metrics(records: Sequence[dict], rows: Sequence[dict]) -> dict | None:
    """Accuracy, MCC etc. (core.metrics) where every scored record has a gold output."""
    from core.metrics import label_metrics

    gold = [str(r.get("output", "")).strip() for r in records]
    if not gold or not all(gold):
        return None
    result = label_metrics(gold, [row["prediction"] for row in rows])
    return {
        key: result[key] for key in ("n", "accuracy", "mcc", "macro_f1", "mae", "labels", "confusion") if key in result
    }


def local_scores(
    scorer: LabelScorer, records: Sequence[dict], encoded: Sequence[Encoded], batch_size: int, kind: str
) -> list[np.ndarray]:
    """Every row's scores in this one process; `kind` ("rows" or "calibration") is for pipeline.sharded_scoring."""
    return score_encoded(scorer.model, encoded, batch_size, scorer.pad_id)


def run(args: argparse.Namespace, scores_of: Any = local_scores, write: bool = True) -> dict:
    """Score, calibrate, write. `scores_of` (local_scores' signature) and `write=False` are the hooks
    pipeline.sharded_scoring runs every rank through; its extra report keys arrive in `report["shards"]`."""
    return score_split(Run.from_args(args), args, scores_of, write)


def score_split(
    run: Run,
    args: argparse.Namespace,
    scores_of: Any = local_scores,
    write: bool = True,
    report_json: Path | None = None,
) -> dict:
    """label_scoring.run for a resolved Run (pipeline.select scores each checkpoint through it); `args` holds the
    scoring options (build_parser's), `report_json` where the report goes (default saves/TASK/MODEL/score/)."""
    config = run.config("predict", generate=False)
    check_cutoff(config, "predict", run.model, run.task, explicit="cutoff_len" in run.override_dict)
    check_model_reachable(config, run.model)
    try:
        rules = scoring_task(run, args.labels)
    except InputError as err:
        raise RunError(str(err)) from None
    name = config["eval_dataset"]
    records, attr = load_records(config, name)
    if run.limit is not None:  # LIMIT=N: the trial's rows, the same in every stage (core.records.trial_indices)
        group_col = run.spec.group_col if run.spec else None
        if write:  # rank 0 of a sharded run says it once
            print(f"[score] {describe_trial(records, run.limit, group_col)} of {name} (a trial run)", flush=True)
        records = trial_records(records, run.limit, group_col)
    sets = label_sets(records, rules, name)
    infer_args = infer_arguments(config)

    start = time.perf_counter()
    scorer = LabelScorer(infer_args)
    loaded = time.perf_counter()
    encoded = scorer.encode(records, sets, attr)
    scores = scores_of(scorer, records, encoded, args.batch_size, "rows")
    seconds = time.perf_counter() - loaded
    raw_rows = prediction_rows(records, sets, scores, rules)
    report: dict[str, Any] = {
        "model": run.model,
        "task": run.task,
        "dataset": name,
        "rows": len(records),
        "limit": run.limit,
        "batch_size": args.batch_size,
        "prompt_tokens_per_row": round(float(np.mean([len(e.prompt) for e in encoded])), 1),
        "load_seconds": round(loaded - start, 2),
        "score_seconds": round(seconds, 2),
        "rows_per_second": round(len(records) / seconds, 2),
        "infer_args": infer_args,
        "checkpoint": run.checkpoint_choice,
        "raw": {
            "metrics": metrics(records, raw_rows),
            "predicted": dict(Counter(row["prediction"] for row in raw_rows)),
        },
    }
    out = Path(args.out) if args.out else run.predictions_csv("score")
    score_dir = Path(config["output_dir"]).with_name(STAGE_DIRS["score"])  # beside predict/, overrides followed
    rows = raw_rows
    if args.calibrate:
        train_name = args.calibrate_on or f"{run.task}_train"
        train, train_attr = load_records(config, train_name)
        train_sets = label_sets(train, rules, train_name)
        rng = np.random.default_rng(args.seed)
        picked = sorted(rng.choice(len(train), size=min(args.calibration_rows, len(train)), replace=False).tolist())
        slice_records = [train[i] for i in picked]
        train_scores = scores_of(
            scorer,
            slice_records,
            scorer.encode(slice_records, [train_sets[i] for i in picked], train_attr),
            args.batch_size,
            "calibration",
        )
        calibration = fit_calibration(train, train_sets, picked, train_scores, rules)
        rows = prediction_rows(records, sets, apply_calibration(records, scores, sets, calibration, rules), rules)
        raw_out = score_dir / f"{run.model}_raw.csv"
        if write:
            atomic_write_csv(raw_out, list(raw_rows))
        report.update(
            raw_predictions=str(raw_out),
            calibration={
                "fitted_on": f"{train_name}: {len(picked)} of {len(train)} records (seed {args.seed})",
                "sets": list(calibration.values()),
            },
        )
        report["calibrated"] = {
            "metrics": metrics(records, rows),
            "predicted": dict(Counter(row["prediction"] for row in rows)),
        }
    report["predictions"] = str(out)
    report.update(getattr(scores_of, "report", {}))
    if write:
        atomic_write_csv(out, list(rows))
        run.record_origin(out, run.data_file(), len(rows), f"label scoring {run.model}")
        atomic_write_json(report_json or score_dir / "report.json", report)
        scored = report.get("calibrated", report["raw"])["metrics"] or {}
        record_predictions(
            "score",
            run.task,
            run.model,
            out,
            run.split,
            len(rows),
            time.perf_counter() - start,
            adapter=infer_args.get("adapter_name_or_path", ""),
            metrics={key: value for key, value in scored.items() if key in ("accuracy", "mcc", "macro_f1", "mae")},
            calibrated=bool(args.calibrate),
        )
    return report


def summary(report: dict) -> str:
    limited = f" (LIMIT={report['limit']}: a trial run)" if report.get("limit") else ""
    lines = [
        f"[score] {report['rows']} rows of {report['dataset']}{limited} in {report['score_seconds']} s "
        f"({report['rows_per_second']} rows/s, {report['prompt_tokens_per_row']} prompt tokens/row) "
        f"→ {report['predictions']}"
    ]
    for kind in ("raw", "calibrated"):
        if kind in report:
            m = report[kind]["metrics"]
            score = f"accuracy {m['accuracy']:.3f}, MCC {m['mcc']:.3f}; " if m else ""
            lines.append(f"[score] {kind}: {score}predicted {report[kind]['predicted']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("python -m pipeline.score", __doc__, checkpoint=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--labels", help="candidate labels for every row, comma-separated (default: the task's)")
    parser.add_argument("--calibrate", action="store_true", help="fit per-label biases on a TASK_train slice")
    parser.add_argument(
        "--calibrate-on",
        metavar="DATASET",
        help="calibrate on this registered dataset instead of TASK_train (a held-out train slice)",
    )
    parser.add_argument("--calibration-rows", type=int, default=512, help="train records scored to calibrate (512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration slice")
    parser.add_argument("--out", help="default predictions/TASK/MODEL_score.csv")
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes (GPUs) per node: torchrun ranks score length-balanced shards, rank 0 merges "
        "(pipeline/sharded_scoring.py; NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT as for train)",
    )
    return parser
