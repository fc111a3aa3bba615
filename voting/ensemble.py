"""An ensemble vote over prediction files, as the task says: files read and aligned by id, each row's group (judge:
dimension) from the files or a groups file, the task's tie-breaker-only groups, weights, hard or soft votes.

`vote_files` is what `python -m voting vote` and `report` run; the vote itself is voting/rules.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.tasks import TaskSpec
from voting import VotingError, first_items
from voting.predictions import (
    Predictions,
    aligned_predictions,
    labels_or_error,
    read_csv_frame,
    read_predictions_csv,
    report_unparsed,
)
from voting.rules import NO_VOTE, VoteResult, ensemble_vote, self_consistency_vote


@dataclass
class VoteOptions:
    """How to vote: the tie-breaker's file stem (default: the first file), weights by stem, and the rest."""

    tie_breaker: str | None = None
    weights: str | None = None
    soft: bool = False
    groups: str | None = None  # CSV id,<group column> for files without the column
    tie_breaker_only: Sequence[str] | None = None  # None: the task's own (judge: 选择题)
    unparsed: str | None = None
    files: list[str] = field(default_factory=list)


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


def read_group_map(path: str | None, task: TaskSpec) -> dict[str, str] | None:
    """id → group from `--groups FILE` (columns id and the task's group column)."""
    if not path:
        return None
    if not task.group_col:
        raise VotingError(f"--groups {path}: task {task.name} has no groups")
    frame = read_csv_frame(path, ("id", task.group_col))
    return dict(zip(frame["id"], frame[task.group_col], strict=True))


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


@dataclass
class Vote:
    """The aligned files, the voted labels (None: no vote), why each row got its label, unparsed counts."""

    files: list[Predictions]
    voted: np.ndarray
    result: VoteResult
    unparsed: dict[str, int]
    tie_breaker: str


def read_aligned(paths: Sequence[str], task: TaskSpec, tie_breaker: str, group_map: dict[str, str] | None
                 ) -> list[Predictions]:
    """Read every file (the tie-breaker's first: its group column serves files without one), rows in one order."""
    names = [Path(path).stem for path in paths]
    tb_index = names.index(tie_breaker)
    tb_file = read_predictions_csv(paths[tb_index], task, group_map)
    groups = group_map
    if groups is None and tb_file.groups is not None:
        groups = dict(zip(tb_file.ids, tb_file.groups, strict=True))
    files = [tb_file if i == tb_index else read_predictions_csv(path, task, groups, tb_file.ids)
             for i, path in enumerate(paths)]
    return aligned_predictions(files)


def row_groups(files: Sequence[Predictions], task: TaskSpec, group_map: dict[str, str] | None,
               tb_index: int, groups_path: str | None) -> np.ndarray:
    """Each row's group for the tie-breaker-only rule: from --groups, else from the tie-breaker's file."""
    if group_map is not None:
        missing = [i for i in files[0].ids if i not in group_map]
        if missing:
            raise VotingError(f"{groups_path}: no {task.group_col} for {len(missing)} ids ({first_items(missing)})")
        return np.array([group_map[i] for i in files[0].ids], dtype=object)
    if files[tb_index].groups is not None:
        return np.asarray(files[tb_index].groups, dtype=object)
    raise VotingError(f"{files[tb_index].path}: no {task.group_col} column for the task's tie-breaker-only groups "
                      f"({', '.join(task.tie_breaker_only)}); add it, or give --groups FILE with id,{task.group_col}")


def vote_files(paths: Sequence[str], task: TaskSpec, options: VoteOptions) -> Vote:
    """Read, check and vote the files as the task and the options say."""
    names = [Path(path).stem for path in paths]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise VotingError(f"files share the stem {', '.join(repeated)}: each model needs its own file name")
    tie_breaker = options.tie_breaker or names[0]
    if tie_breaker not in names:
        raise VotingError(f"--tie-breaker {tie_breaker} matches no file: the files are {', '.join(paths)}")
    tb_index = names.index(tie_breaker)
    group_map = read_group_map(options.groups, task)
    files = read_aligned(paths, task, tie_breaker, group_map)
    unparsed = {f.name: report_unparsed(f) for f in files}
    label_order = list(task.labels) if task.labels else sorted(
        {x for f in files for x in f.labels if x is not None} | (set(files[0].prob_labels) if options.soft else set()))
    if options.unparsed is not None and options.unparsed not in label_order:
        if task.labels:
            raise VotingError(f"--unparsed {options.unparsed}: not a {task.name} label ({', '.join(label_order)})")
        label_order.append(options.unparsed)
    only = task.tie_breaker_only if options.tie_breaker_only is None else tuple(options.tie_breaker_only)
    if only and not task.group_col:
        raise VotingError(f"--tie-breaker-only: task {task.name} has no groups")
    tie_breaker_only = np.isin(row_groups(files, task, group_map, tb_index, options.groups), only) if only else None
    probs = soft_probabilities(files, label_order) if options.soft else None
    weights = parse_weights(options.weights, names)
    voted, result = ensemble_vote([f.labels for f in files], label_order, tb_index, weights, probs,
                                  tie_breaker_only, options.unparsed)
    no_vote = result.decided_by == NO_VOTE
    if no_vote.any():
        raise VotingError(f"{', '.join(paths)}: no model's text parsed on {int(no_vote.sum())} rows, ids "
                          f"{first_items(files[0].ids[no_vote])}; fix them or give --unparsed LABEL")
    return Vote(files, voted, result, unparsed, tie_breaker)


def self_consistency(path: str | Path, task: TaskSpec, unparsed: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Most frequent parsed sample per id (ties: first in sample order); the voted frame and a summary.

    The voted frame has id, prediction, votes, samples, tied, and the extra columns of the id's winning sample
    (its `text`, its group), so what is shown is what won.
    """
    path = Path(path)
    frame = read_csv_frame(path, ("id", "prediction"), unique_ids=False)
    if "sample" in frame.columns:
        numbers = pd.to_numeric(frame["sample"], errors="coerce")
        if numbers.notna().all():
            frame = frame.iloc[np.argsort(numbers.to_numpy(), kind="stable")].reset_index(drop=True)
    groups = frame[task.group_col].to_numpy(dtype=object) if task.group_col in frame.columns else None
    labels = labels_or_error(path, frame, "prediction", task, groups)
    n_unparsed = int(sum(label is None for label in labels))
    if n_unparsed:
        print(f"{path}: {n_unparsed} of {len(labels)} samples unparsed (they abstain)", file=sys.stderr)
    voted = self_consistency_vote(frame["id"].to_numpy(dtype=object), labels)
    empty = voted["prediction"].isna()
    if empty.any():
        if unparsed is None:
            raise VotingError(f"{path}: no sample parsed for {int(empty.sum())} ids ({first_items(voted.index[empty])})"
                              "; fix them or give --unparsed LABEL")
        if task.labels and unparsed not in task.labels:
            raise VotingError(f"--unparsed {unparsed}: not a {task.name} label ({', '.join(task.labels)})")
        voted.loc[empty, "prediction"] = unparsed
    out = voted.reset_index()
    extras = [c for c in frame.columns if c not in ("id", "prediction", "sample") and not c.startswith("prob_")]
    if extras:
        # the first sample whose label is the winner (else the id's first sample) supplies the extra columns
        frame["_label"] = pd.Series(labels, dtype=object).to_numpy()
        winner = frame["id"].map(voted["prediction"]).to_numpy(dtype=object)
        won = frame[frame["_label"].to_numpy(dtype=object) == winner].drop_duplicates("id").set_index("id")
        first = frame.drop_duplicates("id").set_index("id")
        for column in extras:
            out[column] = won[column].reindex(out["id"]).fillna(first[column].reindex(out["id"])).to_numpy()
    summary = {"ids": len(out), "samples": len(frame), "unparsed_samples": n_unparsed,
               "ties": int(out["tied"].sum()), "filled_unparsed": int(empty.sum())}
    return out, summary
