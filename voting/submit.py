"""Submission files in each competition's own format: the task's registered writer (adapters/<task>.py) on the
labels of a (voted) predictions file, in the order of the adapter's test set.

Every test id must have a prediction (else VotingError naming the first missing ids); ids the test file lacks are
ignored with a note. The file names (`submit.csv`, `result_CoLA.txt`, `upload.jsonl`, `answers.jsonl`) are the
tasks' `submission_name`, used when `--out` is a folder.
A submit that fails removes the task's files an earlier submit left in `--out` (logic: upload.jsonl and answer.txt):
what is there is always the last successful run's, never an older model's that looks current.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from core.records import trial_records
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
                " fix them or give a label for them (--unparsed LABEL; UNPARSED= in make)"
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

    `limit`: a trial's N records of the test file (LIMIT=N: core.records.trial_indices, every group of the task,
    the rows every stage of the trial took; the CoLA/QQP exam's first 150 dev rows).
    """
    if task.write_submission is None:
        raise VotingError(f"task {task.name} has no submission format")
    path = task.submission_path(out)
    with cleared_on_failure(task, out):
        records = trial_records(read_dataset_json(test), limit, task.group_col)
        labels = labels_by_id(pred, task, records, unparsed)
        limited = {"limit": limit} if limit is not None else {}  # writers that keep other rows (logic) leave them out
        summary = task.write_submission(path, records, labels, task=task, **limited, **extras)
    return {"task": task.name, "out": str(path), **limited, **summary}


@contextlib.contextmanager
def cleared_on_failure(task: TaskSpec, out: str | Path) -> Iterator[None]:
    """On an error in the block, remove the task's submission files from `out` (an earlier run's) and say so."""
    try:
        yield
    except Exception:
        removed = clear_submission(task, out)
        if removed:
            print(
                f"submit failed: removed {', '.join(removed)} (an earlier run's, which would look current)",
                file=sys.stderr,
            )
        raise


def submission_files(task: TaskSpec, out: str | Path) -> list[Path]:
    """The files a submit of `task` writes to `out`: its submission file and the spec's companions (logic's
    answer.txt)."""
    path = task.submission_path(out)
    return [path, *(path.with_name(name) for name in task.submission_companions)]


def clear_submission(task: TaskSpec, out: str | Path) -> list[str]:
    """Remove the task's submission files from `out` (`submit --clear`, and a failed submit); the removed paths."""
    removed = []
    for path in submission_files(task, out):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(str(path))
    return removed
