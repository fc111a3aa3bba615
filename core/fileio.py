"""Atomic writes and encoding detection: the file plumbing every stage shares, written once."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# Tried in order; GB18030 is a superset of GBK/GB2312, so it covers the competition's Chinese CSVs.
ENCODINGS = ("utf-8-sig", "gb18030")


class DecodeError(ValueError):
    """A file that is neither UTF-8 nor GB18030; the message names the file, line and byte offset."""


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", **kwargs: Any) -> Iterator[IO]:
    """Open a temp file beside `path`; rename it over `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    with atomic_open(path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


def detect_encoding(data: bytes) -> str:
    """Return the first of ENCODINGS that decodes `data` ("utf-8-sig" also reads plain UTF-8)."""
    for encoding in ENCODINGS:
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    raise UnicodeDecodeError("utf-8", data, 0, 1, "neither UTF-8 nor GB18030")


def read_text(path: str | os.PathLike) -> tuple[str, str]:
    """Read a text file as UTF-8 (with or without BOM) or GB18030; return (text, encoding).

    Raises DecodeError naming the file, the line and the byte offset where UTF-8 decoding failed.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        encoding = detect_encoding(data)
    except UnicodeDecodeError:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data[: err.start].count(b"\n") + 1
            raise DecodeError(
                f"{path} line {line} (byte {err.start}): undecodable bytes {data[err.start:err.start + 4]!r}, "
                "expected UTF-8 or GB18030 text"
            ) from None
        raise  # unreachable: UTF-8 decoding succeeded above
    return data.decode(encoding), encoding


def _csv_cell(value: Any) -> Any:
    # csv with lineterminator="\n" quotes "\n" but not a lone "\r", which would split the row when read back.
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value


def atomic_write_csv(path: str | os.PathLike, rows: list[dict], fieldnames: list[str] | None = None,
                     encoding: str = "utf-8") -> None:
    """Write dict rows as CSV (LF line ends, header from the first row unless given), atomically."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames or list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _csv_cell(value) for key, value in row.items()} for row in rows)
    atomic_write_text(path, buffer.getvalue(), encoding=encoding)
