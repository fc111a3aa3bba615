"""Cross-validation folds of a train split: seeded, stratified by label, grouped where rows belong together.

Pure functions (pipeline/cv.py reads and writes DATA/TASK_folds.json):
- a stratum is a row's label, within its group column where the task has one (judge: `dimension` × score), so
  every fold holds each dimension's scores in the same proportions;
- a fold group is the rows that must stay together (the spec's `fold_group_of`; logic: one problem's questions):
  a group is placed whole, so no problem is both trained on and held out;
- groups are placed largest first (seeded shuffle among equals), each into the fold with the fewest rows of its
  strata so far, then the fewest rows.
`check_foldable` refuses, before any training, fewer rows, groups or rows of a stratum than folds, with the counts.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from core.tasks import TaskSpec
from pipeline.errors import RunError

Record = Mapping[str, Any]


def stratum_of(record: Record, spec: TaskSpec | None) -> str:
    """The row's label, prefixed by its group (judge: "流畅性=4") where the task has a group column."""
    label = str(record.get("output", "")).strip()
    group = spec.group_of(record) if spec is not None else None
    return f"{group}={label}" if group not in (None, "") else label


def fold_group(record: Record, spec: TaskSpec | None) -> str:
    """The key of the rows that stay in one fold (logic: the problem); else the row's own id."""
    if spec is not None and spec.fold_group_of is not None:
        return spec.fold_group_of(record)
    return f"id:{record['id']}"


def check_foldable(records: Sequence[Record], folds: int, spec: TaskSpec | None, where: str) -> None:
    """Refuse a split that cannot give every fold held-out rows of every label: one message with the counts."""
    if folds < 2:
        raise RunError(f"FOLDS={folds}: cross-validation needs at least 2 folds")
    unlabelled = [str(r["id"]) for r in records if str(r.get("output", "")).strip() == ""]
    if unlabelled:
        raise RunError(
            f"{where}: {len(unlabelled)} rows have no label (ids {', '.join(unlabelled[:5])}); folds need labels"
        )
    if len(records) < folds:
        raise RunError(f"{where} has {len(records)} rows, fewer than FOLDS={folds}")
    groups = {fold_group(r, spec) for r in records}
    if len(groups) < folds:
        raise RunError(
            f"{where} has {len(groups)} groups of rows that stay together (a logic problem's questions), "
            f"fewer than FOLDS={folds}"
        )
    counts = Counter(stratum_of(r, spec) for r in records)
    few = {stratum: n for stratum, n in sorted(counts.items()) if n < folds}
    if few:
        shown = ", ".join(f"{stratum!r}: {n}" for stratum, n in few.items())
        raise RunError(
            f"{where}: {len(few)} label(s) have fewer rows than FOLDS={folds} ({shown}; all: "
            f"{dict(sorted(counts.items()))}): give fewer folds, or more rows of those labels"
        )


def assign_folds(records: Sequence[Record], folds: int, seed: int, spec: TaskSpec | None) -> dict[str, int]:
    """id → fold (0..folds-1), stratified and grouped as the module says; the same for the same records and seed."""
    members: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        members[fold_group(record, spec)].append(record)
    keys = sorted(members)
    random.Random(seed).shuffle(keys)
    keys.sort(key=lambda key: -len(members[key]))  # stable: the shuffle orders groups of one size
    per_stratum: list[Counter] = [Counter() for _ in range(folds)]
    sizes = [0] * folds
    assignment: dict[str, int] = {}
    for key in keys:
        strata = Counter(stratum_of(r, spec) for r in members[key])
        fold = min(
            range(folds),
            key=lambda k: (sum(per_stratum[k][s] * n for s, n in strata.items()), sizes[k], k),
        )
        per_stratum[fold].update(strata)
        sizes[fold] += len(members[key])
        for record in members[key]:
            assignment[str(record["id"])] = fold
    return {str(r["id"]): assignment[str(r["id"])] for r in records}


def folds_sha256(assignment: Mapping[str, int], folds: int) -> str:
    """The assignment's hash: every OOF file records it, and an ensemble refuses files of two assignments."""
    text = json.dumps({"folds": folds, "assignment": sorted(assignment.items())}, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fold_summary(records: Sequence[Record], assignment: Mapping[str, int], spec: TaskSpec | None) -> list[dict]:
    """Per fold: rows and rows per stratum (what the folds file and the log show)."""
    out: list[dict] = [{"rows": 0, "strata": Counter()} for _ in range(max(assignment.values()) + 1)]
    for record in records:
        entry = out[assignment[str(record["id"])]]
        entry["rows"] += 1
        entry["strata"][stratum_of(record, spec)] += 1
    return [{"rows": e["rows"], "strata": dict(sorted(e["strata"].items()))} for e in out]
