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


def hold_out(
    records: list[dict[str, Any]],
    share: float,
    seed: int,
    group: Callable[[dict[str, Any]], Any] | None = None,
    stratum: Callable[[dict[str, Any]], Any] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, dev): about `share` of the records held out for dev (seeded), file order kept on both sides.

    Records with the same `group` key go to the same side (QA: the question text, so a repeated question is never
    both trained on and scored); `stratum` keeps each stratum's share (judge: dimension and score), the quotas
    rounded by largest remainder so they add up to round(share × records), at least one record on each side.
    """
    groups: dict[Any, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups[group(record) if group else index].append(index)
    strata: dict[Any, list[list[int]]] = defaultdict(list)
    for members in groups.values():
        strata[stratum(records[members[0]]) if stratum else ""].append(members)
    total = min(max(round(share * len(records)), 1), len(records) - 1)
    sizes = {key: sum(map(len, cells)) for key, cells in strata.items()}
    exact = {key: total * size / len(records) for key, size in sizes.items()}
    quota = {key: int(value) for key, value in exact.items()}
    order = sorted(strata, key=lambda key: (exact[key] - quota[key], sizes[key]), reverse=True)
    for key in order[: total - sum(quota.values())]:
        quota[key] += 1
    rng = random.Random(seed)
    dev: list[int] = []
    for key in sorted(strata, key=str):
        cells = strata[key]
        rng.shuffle(cells)
        taken = 0
        for members in cells:  # whole groups, until the stratum's quota is met
            if taken >= quota[key]:
                break
            dev.extend(members)
            taken += len(members)
    chosen = set(dev)
    if len(chosen) == len(records):  # one group holds everything (or the last group overshot): keep some to train
        chosen -= set(groups[group(records[dev[-1]]) if group else dev[-1]])
    return [r for i, r in enumerate(records) if i not in chosen], [r for i, r in enumerate(records) if i in chosen]


def dev_share(text: str) -> float:
    """argparse type of `--dev-share`: '0.1' or '10%', strictly between 0 and 1."""
    import argparse

    try:
        value = float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share such as 0.1 or 10%") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share between 0 and 1 (e.g. 0.1 or 10%)")
    return value


def add_hold_out_arguments(parser: Any, kept: str) -> None:
    """`--dev-share SHARE` and `--seed N` for an adapter whose competition gives no labelled dev file."""
    parser.add_argument(
        "--dev-share",
        type=dev_share,
        metavar="SHARE",
        help=f"hold out this share of --train (e.g. 0.1) as NAME_dev, seeded; {kept}",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the --dev-share hold-out (default 42)")


def held_out_parts(
    part: Part,
    args: Any,
    group: Callable[[dict[str, Any]], Any] | None = None,
    stratum: Callable[[dict[str, Any]], Any] | None = None,
    kept: str = "",
) -> list[Part]:
    """[part], or with `--dev-share` on the train split [train, dev] (hold_out); the train part's notes say so."""
    share = getattr(args, "dev_share", None)
    if share is None:
        return [part]
    if part.split == "dev":
        raise AdapterError(
            f"--dev-share holds dev out of --train, and --dev {part.source} gives a dev file too: give one of them"
        )
    if part.split != "train":
        if getattr(args, "train", None) is None:
            raise AdapterError("--dev-share holds dev out of --train: give --train FILE (or leave --dev-share out)")
        return [part]
    seed = getattr(args, "seed", 42)
    train, dev = hold_out(part.records, share, seed, group, stratum)
    if not dev or not train:
        raise AdapterError(
            f"{part.source}: --dev-share {share:g} of {len(part.records)} records leaves "
            f"{'no dev' if not dev else 'no train'} records ({kept or 'one group holds them all'})"
        )
    note = f"{len(dev)} of {len(part.records)} records held out as the dev split (--dev-share {share:g}, seed {seed})"
    part.notes["held_out"] = f"{note}; {kept}" if kept else note
    part.records = train
    dev_notes = {"held_out_from": f"{part.source} (--train): {note}"}
    return [part, Part("dev", part.source, dev, len(dev), [], part.subset, part.label_of, dev_notes, part.task)]
