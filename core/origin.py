"""Where a predictions file came from: `MODEL.origin.json` beside `MODEL.csv` records the dataset, split, trial limit
and the sha256 of the data file it was made from.

Every stage that writes predictions (predict, label scoring, the TF-IDF baseline, self-consistency samples, the vote)
records it; vote, report and submit refuse a file made from another dataset, split or trial, naming it. Files
without one (made by hand, or before this existed) are taken as they are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core import InputError
from core.fileio import atomic_write_json

SUFFIX = ".origin.json"


def origin_path(csv_path: str | Path) -> Path:
    path = Path(csv_path)
    return path.with_name(path.stem + SUFFIX)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_origin(
    csv_path: str | Path,
    data_file: str | Path,
    split: str,
    limit: int | None,
    made_by: str,
    rows: int,
    **extra: Any,
) -> dict[str, Any]:
    """Write csv_path's origin: made from `data_file` (its dataset name is the file's stem), `split`, `limit`;
    `extra`: more keys (an OOF file's `folds_sha256`, the fold assignment it was made on)."""
    origin = {
        "dataset": Path(data_file).stem,
        "split": split,
        "limit": limit,
        "data_file": str(data_file),
        "data_sha256": file_sha256(data_file),
        "rows": rows,
        "made_by": made_by,
        **extra,
    }
    atomic_write_json(origin_path(csv_path), origin)
    return origin


def read_origin(csv_path: str | Path) -> dict[str, Any] | None:
    path = origin_path(csv_path)
    try:
        origin = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable origin record ({err}); remove it or predict again") from None
    return origin if isinstance(origin, dict) else None


def describe(origin: dict[str, Any]) -> str:
    trial = f", a trial of its first {origin['limit']} rows" if origin.get("limit") else ""
    return f"{origin.get('dataset')} ({origin.get('data_file')}{trial})"


def common_origin(paths: Iterable[str | Path]) -> dict[str, Any] | None:
    """The origin every recorded file shares (None if none records one); files made from different data or
    different trials are refused, naming them."""
    found = [(str(path), origin) for path in paths if (origin := read_origin(path)) is not None]
    if not found:
        return None
    first_path, first = found[0]
    for path, origin in found[1:]:
        if (origin.get("data_sha256"), origin.get("limit")) != (first.get("data_sha256"), first.get("limit")):
            raise InputError(
                f"{path} was made from {describe(origin)} but {first_path} from {describe(first)}: a vote needs "
                "predictions of the same split (move one aside, or predict it again with the same SPLIT= and LIMIT=)"
            )
    return first


def check_made_from(paths: Iterable[str | Path], data_file: str | Path, limit: int | None = None) -> None:
    """Refuse a predictions file recorded as made from anything but `data_file` (and the same trial limit)."""
    expected = file_sha256(data_file)
    for path in paths:
        origin = read_origin(path)
        if origin is None:
            continue
        if origin.get("data_sha256") != expected:
            raise InputError(
                f"{path} was made from {describe(origin)}, not from {data_file}: predict that split "
                f"(make predict SPLIT={Path(data_file).stem.rsplit('_', 1)[-1]}) or give the matching file"
            )
        if origin.get("limit") and origin.get("limit") != limit:
            raise InputError(
                f"{path} is a trial of the first {origin.get('limit')} rows, not {limit or 'every'} row(s) of "
                f"{data_file}: give LIMIT={origin.get('limit')} to make a trial submission, or predict every row"
            )


def check_split(path: str | Path, split: str, limit: int | None = None) -> None:
    """Refuse a file recorded as made from another split (or trial) than `split` (paper: the keywords file of a
    submission, made from NAME_kw_<split>, beside the labels of NAME_cls_<split>)."""
    origin = read_origin(path)
    if origin is not None and (origin.get("split"), origin.get("limit") or None) != (split, limit):
        raise InputError(
            f"{path} was made from {describe(origin)}, not from the {split} split"
            + (f"'s first {limit} rows" if limit else "")
            + " this submission is for: predict it from that split"
        )


def copy_origin(origin: dict[str, Any], csv_path: str | Path, made_by: str) -> None:
    """Record that csv_path (a vote of files that share `origin`) comes from the same data."""
    atomic_write_json(origin_path(csv_path), {**origin, "made_by": made_by})
