"""The adapters' datasets: one reader for their JSON records, LLaMA-Factory's own reader for dataset_info.json.

A dataset file is a JSON list of records (or JSON lines), each `{"id", "instruction", "input", "output"}` plus
`system`, `history` or a group key (judge: `dimension`) where the task has one. Every id is non-empty and, in a
split, unique.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core import InputError, first_items
from core.fileio import DecodeError, read_text

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
