"""Writing a conversion: data files, the report and, last, the `dataset_info.json` entries; one run end to end."""

from __future__ import annotations

import contextlib
import gc
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.readers import AdapterError, nul_dropped, read_notes
from adapters.records import Part, cap_per_label, drop_duplicates
from adapters.report import build_report, fit_inputs, load_tokenizer
from core import InputError, first_items
from core.fileio import AtomicFiles, atomic_files, atomic_open, locked
from core.paths import check_plain_name
from core.records import REGISTRY, describe_trial, read_registry, trial_records
from core.tasks import TaskError, get_task

SPLITS = ("train", "dev", "test")
KEYED_SPLITS = ("dev", "test")  # predictions, scores and submissions are keyed by their ids


def columns_for(records: list[dict[str, Any]]) -> dict[str, str]:
    """The full alpaca column mapping: a partial `columns` makes LLaMA-Factory null the keys it leaves out."""
    columns = {"prompt": "instruction", "query": "input", "response": "output"}
    # mapped but absent would make LLaMA-Factory raise KeyError, so map system/history only when present
    if records and "system" in records[0]:
        columns["system"] = "system"
    if records and "history" in records[0]:
        columns["history"] = "history"
    return columns


def registry_entry(file_name: str, records: list[dict[str, Any]], task: str) -> dict[str, Any]:
    """LLaMA-Factory's keys, plus the task its records answer (LLaMA-Factory ignores it; later stages read it)."""
    return {"file_name": file_name, "formatting": "alpaca", "columns": columns_for(records), "task": task}


# A reused encoder is ~2x json.dumps per record; the hand-written encoder this replaced was no faster than
# json.dumps (200k judge-like records: encoder 0.71 s, json.dumps 1.53 s, hand-written 1.63 s).
encode_record = json.JSONEncoder(ensure_ascii=False).encode


def write_records(path: Path, records: list[dict[str, Any]], opener: Any = atomic_open) -> None:
    """A JSON list with one record per line: readable, diffable, and fast to write."""
    encode = encode_record
    chunk = 4096  # join a few thousand lines at a time: fast, without a second copy of the whole file in memory
    with opener(path, "w", encoding="utf-8") as handle:
        handle.write("[\n")
        for start in range(0, len(records), chunk):
            if start:
                handle.write(",\n")
            handle.write(",\n".join(map(encode, records[start : start + chunk])))
        handle.write("\n]\n")


def check_parts(parts: list[Part], name: str) -> None:
    names = [part.dataset_name(name) for part in parts]
    for dataset in set(names):
        if names.count(dataset) > 1:
            raise AdapterError(f"two inputs would both write {dataset}; give each split one file")
    for part in parts:
        if part.split in KEYED_SPLITS and part.records:
            check_unique_ids(part, name)
        if not part.records:
            reasons = "; ".join(f"{s['where']}: {s['reason']}" for s in part.skipped[:3])
            raise AdapterError(
                f"{part.source}: no usable rows for {part.dataset_name(name)}" + (f" ({reasons})" if reasons else "")
            )


def check_unique_ids(part: Part, name: str) -> None:
    """A dev/test split's ids key its predictions and submission: a repeated id cannot hold two answers."""
    first: dict[str, int] = {}
    repeated: dict[str, list[int]] = {}
    for index, record in enumerate(part.records):
        seen = first.setdefault(str(record["id"]), index)
        if seen != index:
            repeated.setdefault(str(record["id"]), [seen]).append(index)
    if repeated:
        shown = first_items(f"{key} (records {', '.join(map(str, at[:3]))})" for key, at in repeated.items())
        raise AdapterError(
            f"{part.source}: duplicate ids in the {part.split} split of {part.dataset_name(name)}: "
            f"{shown}; a submission keyed by id cannot hold both, give each row its own id"
        )


def write_outputs(parts: list[Part], name: str, data_dir: Path, report: dict[str, Any]) -> list[str]:
    """Write data files, the report, then the registry (only the NAME_* keys of this run change), all or none.

    Every file goes to a temporary first; only when all are written are they renamed, the registry last, under the
    registry's lock (held across its read, merge and replace, so concurrent conversions keep each other's entries).
    """
    read_registry(data_dir)  # refuse a broken registry before writing anything
    written = [part.dataset_name(name) for part in parts]
    report["registered"] = written
    with atomic_files() as batch:
        for part, dataset in zip(parts, written, strict=True):
            write_records(data_dir / f"{dataset}.json", part.records, opener=batch.open)
        batch.write_json(data_dir / f"{name}_report.json", report)
        register(
            batch,
            data_dir,
            {
                dataset: registry_entry(f"{dataset}.json", part.records, part.task)
                for part, dataset in zip(parts, written, strict=True)
            },
        )
    return written


def register(batch: AtomicFiles, data_dir: Path, entries: dict[str, Any]) -> None:
    """Merge `entries` into dataset_info.json and commit the batch, all under the registry's lock."""
    with locked(data_dir / REGISTRY):
        registry = read_registry(data_dir)
        registry.update(entries)
        batch.write_json(data_dir / REGISTRY, registry)
        batch.commit()


def group_col_of(task: str) -> str | None:
    """The task's group column (judge: dimension), None for a task without groups or not registered."""
    try:
        return get_task(task).group_col
    except TaskError:
        return None


def check_name(name: str) -> None:
    try:
        check_plain_name(name, "--name")
    except InputError as err:
        raise AdapterError(str(err)) from None


def run_conversion(
    adapter: Any,
    files: dict[str, Path],
    name: str,
    data_dir: Path,
    args: Any,
    tokenizer: str | None = "none",
    cutoff_len: int = 1024,
    drop_duplicate_rows: bool = False,
    fit_cutoff: bool = False,
    limit: int | None = None,
    max_per_label: int | None = None,
    model: str | None = None,
    cutoff_from: str = "",
) -> dict[str, Any]:
    """Read and check every file of the run in memory, then write data files, report and registry entries.

    `limit` keeps a trial's N records of each dataset (`make data LIMIT=N`): every group of the task (judge: each
    dimension), the first N where it has none (core.records.trial_indices); the report says which.
    `max_per_label` keeps at most N train records per output label (seeded; after duplicates are dropped).
    """
    check_name(name)
    if not files:
        raise AdapterError("no input: give at least one of --train, --dev, --test")
    with _gc_paused():
        parts: list[Part] = []
        for split in SPLITS:
            if split in files:
                parts.extend(adapter.convert(Path(files[split]), split, args))
        for part in parts:
            part.task = part.task or adapter.name
            if nul_dropped(part.source):
                part.notes["nul_dropped"] = nul_dropped(part.source)
            part.notes.update(read_notes(part.source))
            if limit is not None:  # the trial's rows (core.records.trial_indices), as every later stage takes them
                group_col = group_col_of(part.task)
                part.notes["limited"] = f"{describe_trial(part.records, limit, group_col)}, a trial run"
                part.records = trial_records(part.records, limit, group_col)
        check_parts(parts, name)
        if drop_duplicate_rows:
            for part in parts:
                if part.split == "train":
                    drop_duplicates(part)
        if max_per_label is not None:
            for part in parts:
                if part.split == "train":
                    before = Counter(str(r["output"]) for r in part.records)
                    part.records = cap_per_label(part.records, max_per_label)
                    part.notes["max_per_label"] = (
                        f"at most {max_per_label} records per label (seeded): kept {len(part.records)} of "
                        f"{sum(before.values())}; labels before: {dict(sorted(before.items()))}"
                    )
        read_registry(data_dir)  # a broken dataset_info.json stops the run before any file is written
        tok, note = load_tokenizer(tokenizer, adapter.name, model)
        if fit_cutoff:
            fit_inputs(parts, tok, cutoff_len)
        report = build_report(adapter.name, name, parts, tok, note, cutoff_len)
        if cutoff_from and "cutoff_len" in report["tokens"]:
            report["tokens"]["cutoff_from"] = cutoff_from
        write_outputs(parts, name, data_dir, report)
    return report


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Records hold no reference cycles; pausing the cyclic GC saves its repeated scans of a growing heap."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
