"""The adapters' datasets: one reader for their JSON records, LLaMA-Factory's own reader for dataset_info.json.

A dataset file is a JSON list of records (or JSON lines), each `{"id", "instruction", "input", "output"}` plus
`system`, `history` or a group key (judge: `dimension`) where the task has one. Every id is non-empty and, in a
split, unique.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from core import InputError, first_items
from core.fileio import DecodeError, atomic_write_json, read_text

REGISTRY = "dataset_info.json"
Record = dict[str, Any]


def read_records(path: str | Path, unique_ids: bool = True) -> list[Record]:
    """An adapter dataset file: JSON list or JSON lines of objects, each with a non-empty (unique) `id`."""
    path = Path(path)
    try:
        text, _ = read_text(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; convert the data first (make data / python -m adapters)") from None
    except DecodeError as err:
        raise InputError(str(err)) from None
    try:
        if text.lstrip()[:1] == "[":
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise InputError(f"{path} line {err.lineno}: not JSON ({err.msg}), expected the adapters' records") from None
    if not isinstance(records, list) or not records:
        raise InputError(f"{path}: expected a non-empty JSON list of records with id, instruction, input, output")
    seen: dict[str, int] = {}
    repeated = []
    for index, record in enumerate(records):
        if not isinstance(record, dict) or str(record.get("id", "")).strip() == "":
            raise InputError(f"{path} record {index}: expected an object with a non-empty id")
        record_id = str(record["id"])
        if record_id in seen:
            repeated.append(record_id)
        seen.setdefault(record_id, index)
    if unique_ids and repeated:
        raise InputError(
            f"{path}: duplicate ids {first_items(dict.fromkeys(repeated))} (first at record {seen[repeated[0]]})"
        )
    return records


def read_registry(data_dir: str | Path) -> dict[str, Any]:
    """data_dir/dataset_info.json as a dict ({} when absent); InputError when it is not a JSON object."""
    path = Path(data_dir) / REGISTRY
    if not path.is_file():
        return {}
    try:
        registry = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err}); fix or remove it") from None
    if not isinstance(registry, dict):
        raise InputError(f"{path}: expected a JSON object of dataset entries, found {type(registry).__name__}")
    return registry


def dataset_attr(name: str, data_dir: str | Path) -> Any:
    """LLaMA-Factory's DatasetAttr for a registered dataset (its own `get_dataset_list`, columns joined)."""
    from llamafactory.data.parser import get_dataset_list

    path = Path(data_dir) / REGISTRY
    if not path.is_file():
        raise InputError(f"{path} not found: convert the data first (make data / python -m adapters ...)")
    try:
        (attr,) = get_dataset_list([name], str(data_dir))
    except ValueError as err:
        registered = ", ".join(sorted(read_registry(data_dir))) or "none"
        raise InputError(f"{path}: {err} (registered: {registered})") from None
    return attr


def dataset_file(name: str, data_dir: str | Path) -> tuple[Path, Any]:
    """(the data file, its DatasetAttr) of a registered local dataset."""
    attr = dataset_attr(name, data_dir)
    if attr.load_from != "file":
        raise InputError(f"{name}: registered as {attr.load_from} {attr.dataset_name}; expected a local file")
    return Path(data_dir) / attr.dataset_name, attr


def load_dataset(name: str, data_dir: str | Path) -> tuple[list[Record], Any]:
    """(records, DatasetAttr) of a registered alpaca dataset written by the adapters."""
    path, attr = dataset_file(name, data_dir)
    if attr.formatting != "alpaca":
        raise InputError(f"{name}: formatting {attr.formatting!r}; expected the adapters' alpaca records")
    return read_records(path), attr


def task_of_dataset(stem: str, data_dir: str | Path) -> str | None:
    """The task the adapter recorded for `stem` (any of stem_train/_dev/_test, or the dataset `stem` itself)."""
    registry = read_registry(data_dir)
    for name in (stem, f"{stem}_train", f"{stem}_test", f"{stem}_dev"):
        task = registry.get(name, {}).get("task") if isinstance(registry.get(name), dict) else None
        if task:
            return str(task)
    return None


def trial_indices(records: list[Record], n: int, group_col: str | None = None) -> list[int]:
    """The rows a trial of N takes (LIMIT=N, the same in every stage): N record indices in file order covering every
    group of `group_col` (judge: each dimension), taken round-robin (the 1st row of each group, then the 2nd, ...,
    where a group runs out the others fill in); the first N where there is no group column.

    Taking its own trial again gives every row: `make data LIMIT=N` and a later `LIMIT=N` pick the same records."""
    if n >= len(records):
        return list(range(len(records)))
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(str(record.get(group_col, "")) if group_col else "", []).append(index)
    if len(groups) <= 1:
        return list(range(n))
    picked: list[int] = []
    for depth in range(max(map(len, groups.values()))):
        for indices in groups.values():
            if depth < len(indices) and len(picked) < n:
                picked.append(indices[depth])
    return sorted(picked)


def trial_records(records: list[Record], n: int | None, group_col: str | None = None) -> list[Record]:
    """The trial's records (trial_indices) in file order; every record where `n` is None (not a trial)."""
    return records if n is None else [records[i] for i in trial_indices(records, n, group_col)]


def describe_trial(records: list[Record], n: int, group_col: str | None = None) -> str:
    """Which rows a trial took, for the screen: `LIMIT=12: 4 rows of each of 流畅性, 规范性, 选择题 (12 of 3049 rows)`."""
    picked = trial_records(records, n, group_col)
    groups = dict.fromkeys(str(r.get(group_col, "")) for r in records) if group_col else {}
    if len(groups) <= 1:
        return f"LIMIT={n}: the first {len(picked)} of {len(records)} rows"
    counts = {group: 0 for group in groups}
    for record in picked:
        counts[str(record.get(group_col or "", ""))] += 1
    taken = {group: count for group, count in counts.items() if count}
    if len(set(taken.values())) == 1:
        each = next(iter(taken.values()))
        shown = f"{each} row{'s' if each > 1 else ''} of each of {', '.join(taken)}"
    else:
        shown = ", ".join(f"{count} of {group}" for group, count in taken.items())
    left_out = [group for group, count in counts.items() if not count]
    missing = f"; no row of {', '.join(left_out)} (LIMIT below the {len(groups)} groups)" if left_out else ""
    return f"LIMIT={n}: {shown} ({len(picked)} of {len(records)} rows{missing})"


def write_trial_dataset(name: str, data_dir: str | Path, records: list[Record], folder: str | Path) -> Path:
    """The trial's records as a dataset of their own: folder/NAME.json and a dataset_info.json beside it with the
    original's entry (LLaMA-Factory's max_samples can only take the first N rows). The folder written."""
    entry = read_registry(data_dir).get(name)
    if not isinstance(entry, dict):
        raise InputError(f"{Path(data_dir) / REGISTRY}: no entry {name!r} to copy for the trial")
    folder = Path(folder)
    atomic_write_json(folder / f"{name}.json", records)
    atomic_write_json(folder / REGISTRY, {name: {**entry, "file_name": f"{name}.json"}})
    return folder


def common_system(records: list[Record]) -> tuple[str, int, int] | None:
    """(the most common non-empty `system` prompt, the rows holding it, the rows holding one); None where none has."""
    counts = Counter(str(r["system"]) for r in records if str(r.get("system") or "").strip())
    if not counts:
        return None
    text, count = counts.most_common(1)[0]
    return text, count, sum(counts.values())
