"""Submission files in each competition's own format: the task's registered writer (adapters/<task>.py) on the
labels of a (voted) predictions file, in the order of the adapter's test set.

Every test id must have a prediction (else VotingError naming the first missing ids); ids the test file lacks are
ignored with a note. The file names (`submit.csv`, `result_CoLA.txt`, `upload.jsonl`, `answers.jsonl`) are the
tasks' `submission_name`, used when `--out` is a folder.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.tasks import TaskSpec
from voting import VotingError, first_items
from voting.predictions import read_dataset_json, read_predictions_csv


def labels_by_id(
    pred_path: str | Path, task: TaskSpec, test_records: list[dict], unparsed: str | None = None
) -> dict[str, str]:
    """id → label for every test id, from a predictions file; missing ids and unparsed text are errors."""
    groups = None
    if task.group_col:
        groups = {str(r["id"]): str(r.get(task.group_col, "")) for r in test_records}
    predictions = read_predictions_csv(pred_path, task, groups, refuse_outside=True)
    labels = dict(zip(predictions.ids, predictions.labels, strict=True))
    test_ids = [str(record["id"]) for record in test_records]
    missing = [i for i in test_ids if i not in labels]
    if missing:
        raise VotingError(
            f"{pred_path}: {len(missing)} ids of the test file have no prediction: {first_items(missing)}"
        )
    extra = len(labels) - len(test_ids)
    if extra:
        print(f"{pred_path}: {extra} predicted ids are not in the test file; ignored", file=sys.stderr)
    empty_ids = [i for i in test_ids if labels[i] == ""]
    if empty_ids:  # free text: an empty answer is an answer (it scores 0); said, not refused
        print(
            f"{pred_path}: {len(empty_ids)} of {len(test_ids)} answers are empty and written empty "
            f"({first_items(empty_ids)}); a small max_new_tokens cuts answers off",
            file=sys.stderr,
        )
    unparsed_ids = [i for i in test_ids if labels[i] is None]
    if unparsed_ids:
        if unparsed is None:
            raise VotingError(
                f"{pred_path}: {len(unparsed_ids)} predictions unparsed ({first_items(unparsed_ids)});"
                f" fix them or give --unparsed LABEL"
            )
        print(
            f"{pred_path}: {len(unparsed_ids)} unparsed predictions written as {unparsed!r} "
            f"({first_items(unparsed_ids)})",
            file=sys.stderr,
        )
        labels.update({i: unparsed for i in unparsed_ids})
    return labels


def write_submission(
    task: TaskSpec,
    pred: str | Path,
    test: str | Path,
    out: str | Path,
    unparsed: str | None = None,
    limit: int | None = None,
    **extras: Mapping[str, str] | str | None,
) -> dict[str, Any]:
    """Read the test records and the predictions, then write the task's submission file; its summary.

    `limit`: the test file's first N records only (a trial run, LIMIT=N; the CoLA/QQP exam's first 150 dev rows).
    """
    if task.write_submission is None:
        raise VotingError(f"task {task.name} has no submission format")
    records = read_dataset_json(test)[:limit]
    labels = labels_by_id(pred, task, records, unparsed)
    path = task.submission_path(out)
    limited = {"limit": limit} if limit is not None else {}  # writers that keep other rows (logic) leave them out
    summary = task.write_submission(path, records, labels, task=task, **limited, **extras)
    return {"task": task.name, "out": str(path), **limited, **summary}
