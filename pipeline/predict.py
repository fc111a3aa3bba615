"""Batch generation through LLaMA-Factory's predict stage, joined back to the test records' ids.

predictions/TASK/MODEL.csv          id,prediction[,group]    (greedy, one answer per row)
predictions/TASK/MODEL_samples.csv  id,prediction,sample     (N sampled runs, seed i, for self-consistency)
"""

from __future__ import annotations

from pathlib import Path

from adapters import find_task
from core import InputError
from core.fileio import atomic_write_csv
from core.paths import DATA_DIR, predictions_csv
from core.records import dataset_file
from core.tasks import TaskError
from pipeline.runs import RunError, predicted_rows, run_stage


def test_file(task: str, split: str, data_dir: str | Path | None) -> tuple[Path, str | None]:
    """(the split's data file, the task's group column) from the dataset registry; generation needs no label set, so
    a dataset without a recorded task (registered by hand) just has no group column."""
    data_dir = data_dir or DATA_DIR
    try:
        path, _ = dataset_file(f"{task}_{split}", data_dir)
    except InputError as err:
        raise RunError(str(err)) from None
    try:
        group_col = find_task(task, data_dir).group_col
    except TaskError:
        group_col = None
    return path, group_col


def predict(
    model: str,
    task: str,
    overrides: list[str],
    split: str = "test",
    samples: int = 1,
    temperature: float = 0.7,
    data_dir: str | Path | None = None,
    dry_run: bool = False,
    limit: int | None = None,
) -> Path | None:
    """Greedy predictions (samples <= 1) or N sampled runs gathered into one samples file; the file written.

    `limit` predicts the first N rows only (LLaMA-Factory's max_samples takes the dataset's first N): a trial run.
    """
    test_json, group_col = test_file(task, split, data_dir)
    if limit is not None:
        overrides = [f"max_samples={limit}", *overrides]
    if samples <= 1:
        predict_dir = run_stage(model, "predict", task, overrides, dry_run=dry_run, split=split, data_dir=data_dir)
        if dry_run:
            return None
        out_csv = predictions_csv(task, model)
        rows = predicted_rows(predict_dir, test_json, group_col, limit)
        atomic_write_csv(out_csv, rows)
        print(f"[predict] {len(rows)} predictions → {out_csv}" + (f" (LIMIT={limit}: a trial run)" if limit else ""))
        return out_csv
    gathered: list[dict] = []
    for sample in range(samples):
        sample_overrides = ["do_sample=true", f"temperature={temperature}", f"seed={sample}", *overrides]
        predict_dir = run_stage(
            model, "predict", task, sample_overrides, dry_run=dry_run, split=split, data_dir=data_dir
        )
        if not dry_run:
            gathered += [{**row, "sample": sample} for row in predicted_rows(predict_dir, test_json, group_col, limit)]
    if dry_run:
        return None
    out_csv = predictions_csv(task, model, "samples")
    atomic_write_csv(out_csv, gathered)
    print(f"[predict] {samples} samples per id → {out_csv}")
    return out_csv
