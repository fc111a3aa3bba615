"""An ensemble vote over prediction files, as the task says: files read and aligned by id, each row's group (judge:
dimension) from the files or a groups file, the task's tie-breaker-only groups, weights, hard or soft votes.

`vote_files` is what `python -m voting vote` and `report` run; the vote itself is voting/rules.py.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
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
    read_gold,
    read_predictions_csv,
    report_unparsed,
)
from voting.rules import DECIDED_BY, NO_VOTE, VoteResult, ensemble_vote, self_consistency_vote
from voting.rules import UNPARSED as UNPARSED_FILL

DEFAULT_TIE_BREAKER = "glm4"  # the winning text-judging entry's designated model
MAX_UNPARSED = 0.05  # a model whose share of abstaining rows is above this stops the vote


@dataclass
class VoteOptions:
    """How to vote: the tie-breaker's file stem (default: see `pick_tie_breaker`), weights by stem, and the rest."""

    tie_breaker: str | None = None
    weights: str | None = None
    soft: bool = False
    groups: str | None = None  # CSV id,<group column> for files without the column
    tie_breaker_only: Sequence[str] | None = None  # None: the task's own (judge: 选择题)
    unparsed: str | None = None
    max_unparsed: float = MAX_UNPARSED
    gold: str | None = None  # labelled records (or CSV id,label) to pick the default tie-breaker by


def parse_share(text: str) -> float:
    """'5%' or '0.05' → 0.05 (the --max-unparsed threshold)."""
    try:
        value = float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    except ValueError:
        raise VotingError(f"--max-unparsed {text!r}: expected a share such as 5% or 0.05") from None
    if not 0 <= value <= 1:
        raise VotingError(f"--max-unparsed {text!r}: expected a share between 0% and 100%")
    return value


def labelled_gold(path: str | None, task: TaskSpec) -> dict[str, str]:
    """id → label of the rows of `path` that carry one (a test split's empty outputs are left out)."""
    if not path or not Path(path).is_file():
        return {}
    gold = read_gold(path, task, strict=False)
    return {row_id: label for row_id, label in zip(gold.ids, gold.labels, strict=True) if label is not None}


def pick_tie_breaker(paths: Sequence[str], task: TaskSpec, gold_path: str | None) -> tuple[str, str]:
    """(file stem, why): glm4 where its file is there (the seed's choice); else the file with the best accuracy on
    the labelled rows of `gold_path`; else VotingError listing the files to choose from."""
    names = [Path(path).stem for path in paths]
    if DEFAULT_TIE_BREAKER in names:
        return DEFAULT_TIE_BREAKER, "the seed's tie-breaker"
    gold = labelled_gold(gold_path, task)
    if gold:
        accuracy = {}
        for path, name in zip(paths, names, strict=True):
            predictions = read_predictions_csv(path, task, None)
            hits = [gold[i] == label for i, label in zip(predictions.ids, predictions.labels, strict=True) if i in gold]
            accuracy[name] = sum(hits) / len(hits) if hits else 0.0
        best = max(names, key=lambda name: accuracy[name])  # first of the best in file order
        return best, f"best accuracy on {len(gold)} labelled rows of {gold_path} ({accuracy[best]:.3f})"
    raise VotingError(
        f"no {DEFAULT_TIE_BREAKER}.csv among the files and no labelled rows to pick a tie-breaker by: "
        f"give --tie-breaker NAME (make: TIE=NAME), one of {', '.join(names)}"
    )


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
        if not (math.isfinite(weights[name]) and weights[name] > 0):  # inf would vote every row 0 (inf - inf is nan)
            raise VotingError(
                f"--weights {text}: the weight of {name} is {value.strip()!r}, expected a finite number above 0"
            )
    top = max(weights.values())
    return [weights[name] / top for name in names]  # the largest weighs 1: ties are judged on one scale


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
            raise VotingError(
                f"{files[0].path} and {f.path} have different prob_ columns: "
                f"{', '.join(sorted(reference))} vs {', '.join(sorted(f.prob_labels))}"
            )
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
    tie_breaker_why: str = "given"


def read_aligned(
    paths: Sequence[str], task: TaskSpec, tie_breaker: str, group_map: dict[str, str] | None
) -> list[Predictions]:
    """Read every file (the tie-breaker's first: its group column serves files without one), rows in one order."""
    names = [Path(path).stem for path in paths]
    tb_index = names.index(tie_breaker)
    tb_file = read_predictions_csv(paths[tb_index], task, group_map)
    groups = group_map
    if groups is None and tb_file.groups is not None:
        groups = dict(zip(tb_file.ids, tb_file.groups, strict=True))
    files = [
        tb_file if i == tb_index else read_predictions_csv(path, task, groups, same_ids=tb_file.ids)
        for i, path in enumerate(paths)
    ]
    return aligned_predictions(files)


def row_groups(
    files: Sequence[Predictions],
    task: TaskSpec,
    group_map: dict[str, str] | None,
    tb_index: int,
    groups_path: str | None,
) -> np.ndarray:
    """Each row's group for the tie-breaker-only rule: from --groups, else from the tie-breaker's file."""
    if group_map is not None:
        missing = [i for i in files[0].ids if i not in group_map]
        if missing:
            raise VotingError(f"{groups_path}: no {task.group_col} for {len(missing)} ids ({first_items(missing)})")
        return np.array([group_map[i] for i in files[0].ids], dtype=object)
    if files[tb_index].groups is not None:
        return np.asarray(files[tb_index].groups, dtype=object)
    raise VotingError(
        f"{files[tb_index].path}: no {task.group_col} column for the task's tie-breaker-only groups "
        f"({', '.join(task.tie_breaker_only)}); add it, or give --groups FILE with id,{task.group_col}"
    )


def vote_files(paths: Sequence[str], task: TaskSpec, options: VoteOptions) -> Vote:
    """Read, check and vote the files as the task and the options say."""
    names = [Path(path).stem for path in paths]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise VotingError(f"files share the stem {', '.join(repeated)}: each model needs its own file name")
    tie_breaker, why = options.tie_breaker, "given"
    if tie_breaker is None:
        tie_breaker, why = pick_tie_breaker(paths, task, options.gold)
        print(f"tie-breaker: {tie_breaker} ({why})", file=sys.stderr)
    if tie_breaker not in names:
        raise VotingError(f"--tie-breaker {tie_breaker} matches no file: the files are {', '.join(paths)}")
    tb_index = names.index(tie_breaker)
    group_map = read_group_map(options.groups, task)
    files = read_aligned(paths, task, tie_breaker, group_map)
    unparsed = {f.name: report_unparsed(f) for f in files}
    over = {name: count for name, count in unparsed.items() if count > options.max_unparsed * len(files[0].ids)}
    if over:
        shown = ", ".join(f"{name} {count} of {len(files[0].ids)}" for name, count in over.items())
        raise VotingError(
            f"too many predictions abstain (unparsed or outside the labels): {shown}, above "
            f"--max-unparsed {options.max_unparsed:.0%}; fix those files (their ids are on stderr), "
            "or raise --max-unparsed (make: MAX_UNPARSED=20%)"
        )
    label_order = (
        list(task.labels)
        if task.labels
        else sorted(
            {x for f in files for x in f.labels if x is not None}
            | (set(files[0].prob_labels) if options.soft else set())
        )
    )
    if options.unparsed is not None and options.unparsed not in label_order:
        if task.labels:
            raise VotingError(
                f"--unparsed {options.unparsed} (UNPARSED= in make): not a {task.name} label ({', '.join(label_order)})"
            )
        label_order.append(options.unparsed)
    only = task.tie_breaker_only if options.tie_breaker_only is None else tuple(options.tie_breaker_only)
    if only and not task.group_col:
        raise VotingError(f"--tie-breaker-only: task {task.name} has no groups")
    tie_breaker_only = np.isin(row_groups(files, task, group_map, tb_index, options.groups), only) if only else None
    probs = soft_probabilities(files, label_order) if options.soft else None
    weights = parse_weights(options.weights, names)
    voted, result = ensemble_vote(
        [f.labels for f in files], label_order, tb_index, weights, probs, tie_breaker_only, options.unparsed
    )
    no_vote = result.decided_by == NO_VOTE
    if no_vote.any():
        raise VotingError(
            f"{', '.join(paths)}: no model's text parsed on {int(no_vote.sum())} rows, ids "
            f"{first_items(files[0].ids[no_vote])}; fix them or give a label for them (--unparsed LABEL; UNPARSED= in make)"
        )
    if options.unparsed is not None and task.groups:
        check_filled_label(files, task, group_map, tb_index, options, result.decided_by == UNPARSED_FILL)
    return Vote(files, voted, result, unparsed, tie_breaker, why)


def check_filled_label(
    files: Sequence[Predictions],
    task: TaskSpec,
    group_map: dict[str, str] | None,
    tb_index: int,
    options: VoteOptions,
    filled: np.ndarray,
) -> None:
    """UNPARSED= fills rows no model parsed; in a task whose groups have their own labels (judge: 1–5 scores, the
    选择题 rows' letters) the label must be one the filled rows' group takes, else the submission holds a score where
    a choice belongs."""
    if not filled.any():
        return
    groups = row_groups(files, task, group_map, tb_index, options.groups)
    counts = Counter(str(group) for group in groups[filled])
    # a group the task does not list takes the task's own labels (rules_for(None))
    labels = {group: task.rules_for(group if group in (task.groups or {}) else None)[0] or () for group in counts}
    wrong = {group: count for group, count in counts.items() if labels[group] and options.unparsed not in labels[group]}
    if wrong:
        shown = "; ".join(
            f"{count} {task.group_col} {group} rows (labels {', '.join(labels[group])})"
            for group, count in wrong.items()
        )
        raise VotingError(
            f"--unparsed {options.unparsed} (UNPARSED= in make) would fill rows whose group does not take it: {shown}; "
            "give a label every filled row's group takes, or fix those predictions"
        )


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
            raise VotingError(
                f"{path}: no sample parsed for {int(empty.sum())} ids ({first_items(voted.index[empty])})"
                "; fix them or give a label for them (--unparsed LABEL; UNPARSED= in make)"
            )
        if task.labels and unparsed not in task.labels:
            raise VotingError(
                f"--unparsed {unparsed} (UNPARSED= in make): not a {task.name} label ({', '.join(task.labels)})"
            )
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
    summary = {
        "ids": len(out),
        "samples": len(frame),
        "unparsed_samples": n_unparsed,
        "ties": int(out["tied"].sum()),
        "filled_unparsed": int(empty.sum()),
    }
    return out, summary


def voted_frame(vote: Vote) -> pd.DataFrame:
    """The voted file: id, prediction, which rule decided each row, and the tie-breaker's extra columns (group)."""
    files = vote.files
    tie_breaker = files[[f.name for f in files].index(vote.tie_breaker)]
    out = pd.DataFrame(
        {
            "id": files[0].ids,
            "prediction": vote.voted,
            "decided_by": np.array(DECIDED_BY, dtype=object)[vote.result.decided_by],
        }
    )
    for column in tie_breaker.extra_columns:
        if column not in out.columns:
            out[column] = tie_breaker.frame[column].to_numpy()
    return out
