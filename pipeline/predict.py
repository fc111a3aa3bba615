"""Batch generation through LLaMA-Factory's predict stage, joined back to the test records' ids.

predictions/TASK/MODEL.csv          id,prediction[,group]    (greedy, one answer per row)
predictions/TASK/MODEL_samples.csv  id,prediction,sample     (N sampled runs, seed i, for self-consistency)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from core import InputError
from core.fileio import atomic_write_csv
from core.paths import split_folder
from core.records import describe_trial, read_records, trial_records, write_trial_dataset
from pipeline.errors import RunError
from pipeline.run import Run
from pipeline.runs import run_stage
from pipeline.track import adapter_of, record_predictions


def predicted_rows(
    predict_dir: Path, test_json: Path, group_col: str | None = None, limit: int | None = None
) -> list[dict]:
    """generated_predictions.jsonl is in dataset order: zip it with the test records' ids (and their group).

    `limit`: the run predicted a trial's N records (LIMIT=N: core.records.trial_records, the same in every stage).
    """
    records = trial_records(read_records(test_json), limit, group_col)
    generated = [json.loads(line) for line in (predict_dir / "generated_predictions.jsonl").open(encoding="utf-8")]
    if len(generated) != len(records):
        raise RunError(
            f"{predict_dir}/generated_predictions.jsonl has {len(generated)} rows but {test_json} has "
            f"{len(records)}{f' in the trial of {limit}' if limit else ''}: cannot join by order "
            "(max_samples= takes the first N rows; LIMIT=N takes a trial's rows in every stage)"
        )
    extra = [key for key in (group_col,) if key and key in records[0]]
    # a multi-byte character cut by max_new_tokens decodes as U+FFFD at the end: keep whole characters
    return [
        {
            "id": record["id"],
            "prediction": row["predict"].strip().rstrip("\ufffd"),
            **{key: record[key] for key in extra},
        }
        for record, row in zip(records, generated, strict=True)
    ]


def track(run: Run, predict_dir: Path, out_csv: Path, rows: int, seconds: float, **extra: Any) -> None:
    """Record the prediction in the tracking store: its run folder's settings, the rows, rows/s, the adapter."""
    adapter = adapter_of(predict_dir)
    record_predictions("predict", run.task, run.model, out_csv, run.split, rows, seconds, adapter=adapter, **extra)


def trial_dataset(run: Run, test_json: Path, group_col: str | None, write: bool = True) -> Path:
    """saves/TASK/MODEL/predict/trial/SPLIT-limitN/: the trial's rows as a dataset of their own, which the run
    reads instead of DATA (LLaMA-Factory's max_samples can only take the first N rows, and the trial covers every
    group of the task: judge's 选择题 rows come last)."""
    assert run.limit is not None
    records = read_records(test_json)
    folder = run.stage_dir("predict") / "trial" / split_folder(run.split, run.limit)
    name = f"{run.task}_{run.split}"
    print(f"[predict] {describe_trial(records, run.limit, group_col)} of {name} (a trial run) → {folder}")
    if write:
        try:
            write_trial_dataset(name, run.data_dir, trial_records(records, run.limit, group_col), folder)
        except InputError as err:
            raise RunError(str(err)) from None
    return folder


def predict(run: Run, samples: int = 1, temperature: float = 0.7, dry_run: bool = False) -> Path | None:
    """Greedy predictions (samples <= 1) or N sampled runs gathered into one samples file; the file written.

    `run.limit` predicts a trial's N rows (trial_dataset), the rows every other stage of the trial takes.
    """
    test_json = run.data_file()
    # generation needs no label set: a dataset without a recorded task (registered by hand) has no group column
    group_col = run.spec.group_col if run.spec else None
    trial = trial_dataset(run, test_json, group_col, write=not dry_run) if run.limit is not None else None
    start = time.perf_counter()
    if samples <= 1:
        predict_dir = run_stage(run, "predict", dry_run=dry_run, dataset_dir=trial)
        if dry_run:
            return None
        out_csv = run.predictions_csv()
        rows = predicted_rows(predict_dir, test_json, group_col, run.limit)
        atomic_write_csv(out_csv, rows)
        run.record_origin(out_csv, test_json, len(rows), f"predict {run.model}")
        track(run, predict_dir, out_csv, len(rows), time.perf_counter() - start)
        limited = f" (LIMIT={run.limit}: a trial run)" if run.limit else ""
        print(f"[predict] {len(rows)} predictions → {out_csv}{limited}")
        return out_csv
    gathered: list[dict] = []
    for sample in range(samples):
        sampling = ("do_sample=true", f"temperature={temperature}", f"seed={sample}")
        predict_dir = run_stage(run, "predict", dry_run=dry_run, extra=sampling, dataset_dir=trial)
        if not dry_run:
            gathered += [
                {**row, "sample": sample} for row in predicted_rows(predict_dir, test_json, group_col, run.limit)
            ]
    if dry_run:
        return None
    out_csv = run.predictions_csv("samples")
    atomic_write_csv(out_csv, gathered)
    run.record_origin(out_csv, test_json, len(gathered), f"predict {run.model}, {samples} samples")
    track(run, predict_dir, out_csv, len(gathered), time.perf_counter() - start, samples=samples)
    print(f"[predict] {samples} samples per id → {out_csv}")
    return out_csv
