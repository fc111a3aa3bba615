"""Records: a pure row function maps each row; `build_records` collects them into the `Part`s an adapter returns."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from adapters.readers import AdapterError, RowError, SkipRow


@dataclass
class Part:
    """One dataset to write: the records of one file for one split (and one subset, e.g. paper's cls/kw)."""

    split: str
    source: Path
    records: list[dict[str, Any]]
    rows_in: int
    skipped: list[dict[str, Any]] = field(default_factory=list)
    subset: str = ""
    label_of: Callable[[dict[str, Any]], Any] | None = None  # None: free-text outputs, no distribution
    notes: dict[str, Any] = field(default_factory=dict)
    task: str = ""  # the registered task its records answer (default: the adapter's name)

    def dataset_name(self, name: str) -> str:
        return f"{name}_{self.subset}_{self.split}" if self.subset else f"{name}_{self.split}"


output_label = itemgetter("output")  # a Part's label_of: what its label distribution counts


def build_records(
    rows: Iterable[tuple[int, Any]], to_record: Callable[[Any], dict[str, Any] | list[dict[str, Any]]], where
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Map rows through a pure row function; a RowError becomes an AdapterError naming file and row.

    `where(number)` turns a row number into 'file row N'. A SkipRow is kept in the skipped list with its reason.
    """
    records: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    append = records.append
    for number, row in rows:
        try:
            record = to_record(row)
        except SkipRow as skip:
            skipped.append({"where": where(number), "reason": str(skip)})
            continue
        except RowError as err:
            raise AdapterError(f"{where(number)}: {err}") from None
        if isinstance(record, list):
            records.extend(record)
        else:
            append(record)
    return records, skipped


def quoted(value: Any) -> str:
    """A cell value as error messages show it: "五", or (empty)."""
    text = str(value)
    if not text.strip():
        return "empty"
    return f'"{text[:40]}…"' if len(text) > 40 else f'"{text}"'


def indices_by_label(records: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Each output label's record indices, in file order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups[record["output"]].append(index)
    return groups


def sample(records: list[dict[str, Any]], n: int, seed: int, stratify: bool) -> list[dict[str, Any]]:
    """A seeded sample of n records, in file order; stratified keeps the output label proportions."""
    if n >= len(records):
        return records
    rng = random.Random(seed)
    if not stratify:
        return [records[i] for i in sorted(rng.sample(range(len(records)), n))]
    groups = indices_by_label(records)
    labels = sorted(groups)
    exact = {label: n * len(groups[label]) / len(records) for label in labels}
    quota = {label: int(exact[label]) for label in labels}
    for label in sorted(labels, key=lambda lab: exact[lab] - quota[lab], reverse=True)[: n - sum(quota.values())]:
        quota[label] += 1  # largest remainder, so the quotas add up to n
    chosen = [i for label in labels for i in rng.sample(groups[label], quota[label])]
    return [records[i] for i in sorted(chosen)]


def cap_per_label(records: list[dict[str, Any]], per_label: int, seed: int = 0) -> list[dict[str, Any]]:
    """At most `per_label` records of each output label (a seeded sample of the larger ones), in file order: balanced
    training data against a majority class the model would otherwise learn to answer always."""
    groups = indices_by_label(records)
    rng = random.Random(seed)
    chosen = [i for label in sorted(groups) for i in rng.sample(groups[label], min(per_label, len(groups[label])))]
    return [records[i] for i in sorted(chosen)]


def text_key(records: list[dict[str, Any]]) -> Callable[[dict[str, Any]], tuple[str, ...]]:
    """What makes two records the same text: (system,) instruction and input."""
    if records and "system" in records[0]:
        return itemgetter("system", "instruction", "input")
    return itemgetter("instruction", "input")


def drop_duplicates(part: Part) -> None:
    """Drop records whose whole text and output repeat an earlier one; each drop is listed in `skipped`."""
    seen: dict[tuple[str, ...], str] = {}
    kept = []
    same_text = text_key(part.records)
    for record in part.records:
        key = (*same_text(record), record["output"])
        if key in seen:
            part.skipped.append(
                {"where": f"id {record['id']}", "reason": f"duplicate of id {seen[key]} (--drop-duplicates)"}
            )
        else:
            seen[key] = record["id"]
            kept.append(record)
    part.notes["duplicates_dropped"] = len(part.records) - len(kept)
    part.records = kept
