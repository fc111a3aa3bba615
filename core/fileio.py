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


def atomic_write_frame(path: str | os.PathLike, frame: Any) -> None:
    """A pandas DataFrame as CSV (LF line ends, no index), atomically; the bytes are pandas' `to_csv` output.

    A table of plain strings (nothing a CSV would quote) goes through Arrow's writer, several times faster.
    """
    table = _plain_string_table(frame)
    if table is None:
        with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
            frame.to_csv(handle, index=False, lineterminator="\n")
        return
    import pyarrow.csv as pacsv

    with atomic_open(path, "wb") as handle:  # Arrow quotes every header name, so the header is written here
        handle.write((",".join(table.column_names) + "\n").encode("utf-8"))
        pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def _plain_string_table(frame: Any) -> Any:
    """The frame as an Arrow table if every cell is a str (or None) that CSV writes unquoted; else None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = [str(name) for name in frame.columns]
    if len(names) < 2 or any(pc.match_substring_regex(pa.array(names), r'[,"\r\n]').to_pylist()):
        return None  # a one-column row of "" is written `""`
    columns = []
    for name in frame.columns:
        try:
            column = pa.array(frame[name].to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
        if pc.any(pc.match_substring_regex(column, r'[,"\r\n]')).as_py():
            return None
        columns.append(column)
    return pa.table(columns, names=names)
