"""Atomic writes, locks and encoding detection: the file plumbing every stage shares, written once.

- `atomic_open` / `atomic_write_*`: a temp file beside the target, renamed over it only when complete. A new file
  gets the user's umask (0666 & ~umask, like any other tool), a replaced one keeps its mode. A failed write
  (read-only folder, name too long, disk full) is an `OutputError` naming the path.
- `atomic_files`: several files written to temporaries first and renamed together at the end, so a failure
  part-way leaves the previous set whole (a conversion's data files, report and registry).
- `locked`: an exclusive `flock` on `.NAME.lock` beside a file for a read-modify-write (the dataset registry); the kernel drops it
  when the holder dies, so a crashed process never holds it.
- `formula_safe` / `formula_raw`: CSV cells for humans never start a spreadsheet formula (`'` prefix); the
  project's own readers undo it, so the text round-trips exactly. JSON outputs keep the raw text.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from core import OutputError

# Tried in order; GB18030 is a superset of GBK/GB2312, so it covers the competition's Chinese CSVs.
ENCODINGS = ("utf-8-sig", "gb18030")


class DecodeError(ValueError):
    """A file that is neither UTF-8 nor GB18030; the message names the file, line and byte offset."""


# ---------------------------------------------------------------- modes, temporaries, atomic writes


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide and racy to probe)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(path: Path) -> int:
    """The mode a write to `path` should leave: the existing file's, else 0666 minus the umask (mkstemp gives 0600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _output_error(path: Path, err: OSError) -> OutputError:
    reason = err.strerror or str(err)
    if err.errno == errno.ENAMETOOLONG:
        reason += f" ({len(path.name)} characters; a file name holds at most 255 bytes)"
    where = (
        f"{path}"
        if not err.filename or str(err.filename) in (str(path), str(path.parent))
        else f"{path} ({err.filename})"
    )
    return OutputError(f"cannot write {where}: {reason}")


def _temp_beside(path: Path) -> tuple[int, str]:
    """(fd, name) of a new temp file in path's folder, with the mode `path` will have."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a short prefix: a long target name must not make the temp name too long where the target itself is not
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode(path))
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


@contextlib.contextmanager
def _temp_file(path: Path, mode: str, encoding: str | None, **kwargs: Any) -> Iterator[tuple[IO, str]]:
    """Yield (handle, temp name); flushed and fsynced at the end; the temp is removed if the block fails."""
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, **kwargs) as handle:
            yield handle, tmp
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", **kwargs: Any
) -> Iterator[IO]:
    """Open a temp file beside `path`; rename it over `path` only if the block finishes without error."""
    path = Path(path)
    try:
        with _temp_file(path, mode, encoding, **kwargs) as (handle, tmp):
            yield handle
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(NameError, FileNotFoundError):
            os.unlink(tmp)
        raise _output_error(path, err) from None


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    with atomic_open(path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


class AtomicFiles:
    """Files written to temporaries; `commit()` renames them over their targets in the order they were written."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, Path]] = []

    @contextlib.contextmanager
    def open(
        self, path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", **kwargs: Any
    ) -> Iterator[IO]:
        path = Path(path)
        try:
            with _temp_file(path, mode, encoding, **kwargs) as (handle, tmp):
                yield handle
        except OSError as err:
            raise _output_error(path, err) from None
        self._pending.append((tmp, path))

    def write_json(self, path: str | os.PathLike, obj: Any) -> None:
        with self.open(path, "w", encoding="utf-8") as handle:
            json.dump(obj, handle, ensure_ascii=False, indent=2)
            handle.write("\n")

    def commit(self) -> None:
        """Rename every temp over its target (renames do not need disk space: they do not fail part-way)."""
        for tmp, path in self._pending:
            try:
                os.replace(tmp, path)
            except OSError as err:
                raise _output_error(path, err) from None
        self._pending.clear()

    def discard(self) -> None:
        for tmp, _ in self._pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._pending.clear()


@contextlib.contextmanager
def atomic_files() -> Iterator[AtomicFiles]:
    """Write several files all or none: each to a temp first; renamed together when the block ends without error."""
    files = AtomicFiles()
    try:
        yield files
        files.commit()
    finally:
        files.discard()  # after a failure: the temporaries; after commit: nothing left


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive flock on `.NAME.lock` beside `path` for the block (blocking); released by the kernel if
    the holder dies. The lock file is left in place: deleting it would let a waiter lock an unlinked file.
    """
    import fcntl

    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise _output_error(lock, err) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield lock
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


# ---------------------------------------------------------------- reading text


def detect_encoding(data: bytes) -> str:
    """Return the first of ENCODINGS that decodes `data` ("utf-8-sig" also reads plain UTF-8)."""
    for encoding in ENCODINGS:
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    raise UnicodeDecodeError("utf-8", data, 0, 1, "neither UTF-8 nor GB18030")


def decode_failure(path: str | os.PathLike, data: bytes) -> DecodeError:
    """The error for bytes no encoding reads: where the encoding that gets furthest first fails (line and byte)."""
    failures = []
    for encoding in ENCODINGS:
        try:
            data.decode(encoding)
        except UnicodeDecodeError as err:
            failures.append((err.start, encoding))
    start, encoding = max(failures)  # the best candidate: the one that decodes the longest prefix
    line = data[:start].count(b"\n") + 1
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    name = "UTF-8" if encoding.startswith("utf-8") else encoding.upper()
    return DecodeError(
        f"{path} line {line} (byte {start}, column {column} of the line): undecodable bytes "
        f"{data[start : start + 4]!r} in {name}, the encoding that reads furthest; expected UTF-8 or GB18030 text"
    )


def read_text(path: str | os.PathLike) -> tuple[str, str]:
    """Read a text file as UTF-8 (with or without BOM) or GB18030; return (text, encoding).

    Raises DecodeError naming the file, the line and the byte offset of the first undecodable bytes.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        encoding = detect_encoding(data)
    except UnicodeDecodeError:
        raise decode_failure(path, data) from None
    return data.decode(encoding), encoding


# ---------------------------------------------------------------- CSV for humans: formula-safe cells

FORMULA_START = frozenset("=+-@\t\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _needs_quote(text: str) -> bool:
    if not text:
        return False
    if text[0] in FORMULA_START:
        return not _is_number(text)  # -1 and +0.5 stay numbers
    return text[0] == "'" and _needs_quote(text[1:])  # keeps '=x distinct from =x, so reading back is exact


def formula_safe(value: Any) -> Any:
    """A cell a spreadsheet shows as text: `=1+1` → `'=1+1` (also + - @ tab CR); numbers and other text unchanged."""
    return "'" + value if isinstance(value, str) and _needs_quote(value) else value


def formula_raw(value: Any) -> Any:
    """Undo formula_safe: `'=1+1` → `=1+1`; every other value unchanged."""
    if isinstance(value, str) and value[:1] == "'" and _needs_quote(value[1:]):
        return value[1:]
    return value


def _csv_cell(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    # csv with lineterminator="\n" quotes "\n" but not a lone "\r", which would split the row when read back.
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return formula_safe(value) if value[:1] in FORMULA_START or value[:1] == "'" else value


class SafeCsvWriter:
    """csv.writer whose cells are formula-safe (and carry no lone CR): every CSV the project writes uses it."""

    def __init__(self, handle: IO, **kwargs: Any) -> None:
        kwargs.setdefault("lineterminator", "\n")
        self._writer = csv.writer(handle, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([_csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def atomic_write_csv(
    path: str | os.PathLike, rows: list[dict], fieldnames: list[str] | None = None, encoding: str = "utf-8"
) -> None:
    """Write dict rows as CSV (LF line ends, header from the first row unless given, formula-safe), atomically."""
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames or list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _csv_cell(value) for key, value in row.items()} for row in rows)
    atomic_write_text(path, buffer.getvalue(), encoding=encoding)


def formula_safe_frame(frame: Any) -> Any:
    """A pandas DataFrame with formula_safe applied to its text cells (a copy when any changes)."""
    out = frame
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object:
            continue
        first = values.astype(str).str[:1]
        mask = first.isin(FORMULA_START | {"'"}).to_numpy()
        if mask.any():
            if out is frame:
                out = frame.copy()
            out.loc[mask, column] = values[mask].map(_csv_cell)
    return out


def formula_raw_frame(frame: Any, text: str | None = None) -> Any:
    """Undo formula_safe_frame in place (`text`: the file's text, to skip the work when it holds no quote)."""
    if text is not None and "'" not in text:
        return frame
    for column in frame.columns:
        values = frame[column]
        mask = values.str.startswith("'", na=False).to_numpy()
        if mask.any():
            frame.loc[mask, column] = values[mask].map(formula_raw)
    return frame


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
