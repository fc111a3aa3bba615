"""Reading competition files: CSV/XLSX tables, TSV, JSON lines, DOCX; refusing bad input with file, row and column.

Every reader decodes UTF-8 (BOM or not) or GB18030 and raises AdapterError naming the file and where it failed.
"""

from __future__ import annotations

import csv
import datetime
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

from core import InputError
from core.fileio import ENCODINGS, decode_failure

XLSX_SUFFIXES = (".xlsx", ".xlsm")
ZIP_MAGIC = b"PK\x03\x04"


class AdapterError(InputError):
    """Bad input refused: the message names the file, the row or line, the column and what was expected."""


class RowError(ValueError):
    """Raised by a pure row function; `build_records` prefixes the file and row to make an AdapterError."""


class SkipRow(Exception):  # a signal, not an error: the row is dropped and reported
    """Raised by a row function for a row that is left out of the output; the reason goes into the report."""


def _read_text(path: Path) -> tuple[str, str]:
    """Decode UTF-8 (BOM or not) or GB18030, NUL characters dropped (and counted); undecodable bytes: AdapterError
    naming the line and byte where the encoding that reads furthest fails."""
    if not path.is_file():
        raise AdapterError(f"{path}: no such file")
    data = path.read_bytes()
    for encoding in ENCODINGS:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise AdapterError(str(decode_failure(path, data)))
    del data
    _count_nul(path, text.count("\x00") if "\x00" in text else 0)
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.strip():
        raise AdapterError(f"{path}: the file is empty, expected data")
    return text, encoding


# NUL characters dropped per input file: the conversion's report counts them (`nul_dropped`)
NUL_DROPPED: dict[str, int] = {}


def _count_nul(path: Path, count: int) -> None:
    NUL_DROPPED[str(path)] = count


def nul_dropped(path: str | Path) -> int:
    """How many NUL characters the last read of `path` dropped."""
    return NUL_DROPPED.get(str(path), 0)


# What the last read of each input file noticed and kept (hidden rows, the other sheets, CR line ends): the
# conversion's report lists them, one line each
READ_NOTES: dict[str, dict[str, str]] = {}
READ_NOTE_KEYS = ("hidden_rows", "other_sheets", "line_ends")


def read_notes(path: str | Path) -> dict[str, str]:
    """The notes of the last read of `path` ({} when there was nothing to say)."""
    return READ_NOTES.get(str(path), {})


def duplicate_columns(path: Path, header: list[str], where: str = "row 1 (header)") -> None:
    """Refuse a header that names a column twice (after trimming spaces): only one of them would be read."""
    seen: dict[str, list[int]] = {}
    for index, name in enumerate(header):
        if name:  # unnamed trailing columns are common and never read
            seen.setdefault(name, []).append(index + 1)
    repeated = {name: places for name, places in seen.items() if len(places) > 1}
    if repeated:
        shown = "; ".join(f"{name} (columns {', '.join(map(str, places))})" for name, places in repeated.items())
        raise AdapterError(
            f"{path} {where}: column names repeated: {shown}; expected each column once (rename or delete the "
            "extra one, only one would be read)"
        )


def _nul_bytes(path: Path) -> int:
    """NUL bytes in a file (in UTF-8 and GB18030 a 0x00 byte is always the NUL character), counted in blocks."""
    count = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            count += block.count(b"\x00")
    return count


@dataclass
class Table:
    """A CSV or XLSX sheet: header row plus data rows, every cell a string ('' for empty)."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    numbers: list[int] | None = None  # XLSX: each row's sheet row; CSV: the line each row starts on (found lazily)
    encoding: str = "xlsx"
    blank_rows: int = 0
    sheet_hint: str = ""  # XLSX with several sheets: which one was read, the others by name

    def row_number(self, index: int) -> int:
        """The row as a spreadsheet shows it (header = row 1)."""
        return self.numbers[index] if self.encoding == "xlsx" and self.numbers else index + 2

    def where(self, index: int) -> str:
        """'train.csv row 17', plus the text line where a CSV row starts when that differs (multi-line cells)."""
        if self.encoding == "xlsx":
            return f"{self.path} row {self.row_number(index)}"
        if self.numbers is None:  # only errors and skips need lines: finding them is kept off the fast path
            self.numbers = _csv_lines(self.path, self.encoding)
        return _csv_where(self.path, index + 2, self.numbers[index])

    def require(self, required: Iterable[str], optional: Iterable[str] = ()) -> list[str]:
        """Refuse a header that lacks a required column; return the known columns present, in that order."""
        required, optional = list(required), list(optional)
        missing = [name for name in required if name not in self.header]
        if missing:
            raise AdapterError(
                f"{self.path} row 1 (header): missing column {', '.join(missing)}; expected columns "
                f"{', '.join(required + [f'[{name}]' for name in optional])}, found {', '.join(self.header) or 'none'}"
                + self.sheet_hint
            )
        duplicate_columns(self.path, self.header)
        return required + [name for name in optional if name in self.header]

    def dicts(self, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
        """(row index, {column: value}) for the given columns; built with map/zip, the hot path of big files."""
        positions = [self.header.index(name) for name in columns]
        rows: Iterable[Any] = self.rows
        if positions != list(range(len(self.header))):
            rows = map(itemgetter(*positions), rows) if len(positions) > 1 else ((row[positions[0]],) for row in rows)
        return enumerate(map(dict, map(zip, repeat(columns), rows)))  # widths were checked on reading


def read_table(path: str | Path) -> Table:
    """Read a CSV (UTF-8, UTF-8 with BOM or GB18030) or an XLSX workbook (first sheet) into a Table; what the read
    noticed and kept (hidden rows, other sheets) is in `read_notes(path)`."""
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"{path}: no such file")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if path.suffix.lower() in XLSX_SUFFIXES or magic == ZIP_MAGIC:
        return _read_xlsx(path)
    return _read_csv(path)


def _csv_where(path: Path, row: int, line: int) -> str:
    return f"{path} row {row}" + (f" (line {line})" if line != row else "")


def _is_blank(values: list[str]) -> bool:
    return not values or (len(values) == 1 and not values[0].strip())


def _read_csv(path: Path) -> Table:
    """Parse the file as a stream (no whole-file string in memory), trying UTF-8 (BOM or not), then GB18030."""
    READ_NOTES.pop(str(path), None)
    nul = _nul_bytes(path)
    _count_nul(path, nul)
    for encoding in ENCODINGS:  # a GB18030 file fails UTF-8 at its first Chinese byte, usually in the header
        try:
            with open(path, encoding=encoding, newline="") as handle:
                reader = csv.reader((line.replace("\x00", "") for line in handle) if nul else handle)
                rows = list(reader)
            break
        except UnicodeDecodeError:
            continue
        except csv.Error as err:
            raise AdapterError(
                f"{path} line {reader.line_num}: malformed CSV ({err}), expected comma-separated fields"
            ) from None
    else:
        raise AdapterError(str(decode_failure(path, path.read_bytes())))
    kept = [values for values in rows if values and (len(values) > 1 or values[0].strip())]
    if not kept:
        raise AdapterError(f"{path}: the file is empty, expected a header row and data rows")
    header = [name.strip().lstrip("\ufeff") for name in kept[0]]
    table = Table(path, header, kept[1:], None, encoding, len(rows) - len(kept) - rows.index(kept[0]))
    del rows
    if not table.rows:
        raise AdapterError(f"{path}: only a header row, expected data rows after it")
    width = len(header)
    if any(map(width.__ne__, map(len, table.rows))):
        for index, values in enumerate(table.rows):
            if len(values) != width:
                _check_width(table.where(index), values, header)
    return table


def _csv_lines(path: Path, encoding: str) -> list[int]:
    """The line where each non-blank data row of a CSV starts (re-reads the file; used for messages only)."""
    with open(path, encoding=encoding, newline="") as handle:
        reader = csv.reader(handle)
        lines, start, header_seen = [], 1, False
        for values in reader:
            if not _is_blank(values):
                if header_seen:
                    lines.append(start)
                header_seen = True
            start = reader.line_num + 1
    return lines


def _check_width(where: str, values: list[str], header: list[str]) -> None:
    """A row narrower than the header, or wider with non-empty extra cells, is malformed: refuse it."""
    if len(values) > len(header) and not any(cell.strip() for cell in values[len(header) :]):
        del values[len(header) :]
        return
    raise AdapterError(f"{where}: {len(values)} fields, expected {len(header)} ({', '.join(header)})")


EXACT_DIGITS = 15  # Excel keeps 15 significant digits; a float beyond them holds digits nobody typed


class LongNumber(ValueError):
    """A whole number stored as a float with more than 15 significant digits (an 18-digit id typed as a number)."""


def _long_number(value: Any) -> bool:
    try:
        _cell(value)
    except LongNumber:
        return True
    return False


def _significant_digits(value: float) -> int:
    """Significant digits of the shortest text that reads back as `value` (1.234567890123457e+17: 16)."""
    mantissa = repr(abs(value)).split("e")[0].replace(".", "")
    return len(mantissa.strip("0"))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        if abs(value) >= 10**EXACT_DIGITS:
            if _significant_digits(value) > EXACT_DIGITS:
                raise LongNumber(repr(value))
            return str(int(Decimal(repr(value))))  # 1.23456789012345e+17 as typed: 123456789012345000, not …4992
        return str(int(value))  # a score typed as 5 comes back from openpyxl as 5 or 5.0
    if isinstance(value, datetime.datetime):  # a date-typed id or date: the date as the sheet shows it
        return value.date().isoformat() if value.time() == datetime.time() else value.isoformat(" ")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _read_xlsx(path: Path) -> Table:
    """The first sheet, cached values of formulas; a corrupted file, a formula without a cached value or merged
    cells are refused with file, row and column (they would read as empty cells and drop or mislabel rows)."""
    import openpyxl

    READ_NOTES.pop(str(path), None)
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            names = workbook.sheetnames
            hint = (
                f"; read the first sheet {names[0]!r}, the workbook also has {', '.join(map(repr, names[1:]))}: put "
                "the data sheet first (or save it alone)"
                if len(names) > 1
                else ""
            )
            formulas, merged, hidden = _sheet_hints(path, getattr(sheet, "_worksheet_path", None))
            uncached = _formula_cells(path) if formulas else {}
            table = _xlsx_table(path, sheet, uncached, merged, hint)
        finally:
            workbook.close()
    except AdapterError:
        raise
    except (
        Exception
    ) as err:  # a flipped byte raises anything (ParseError, BadZipFile, NotImplementedError: zip version…)
        raise AdapterError(
            f"{path}: not a readable XLSX workbook ({type(err).__name__}: {err}), expected an .xlsx file saved by "
            "Excel/WPS"
        ) from None
    notes = {}
    if len(names) > 1:
        notes["other_sheets"] = f"read the first sheet {names[0]!r}; not read: {', '.join(map(repr, names[1:]))}"
    hidden_data = [number for number in table.numbers or () if number in hidden]
    if hidden_data:
        shown = ", ".join(map(str, hidden_data[:10])) + (", …" if len(hidden_data) > 10 else "")
        notes["hidden_rows"] = (
            f"{len(hidden_data)} rows hidden in the sheet were read like the others (rows {shown}); "
            "delete them from the sheet to leave them out"
        )
    if notes:
        READ_NOTES[str(path)] = notes
    return table


_FORMULA_TAG = re.compile(rb"<(?:\w+:)?f[\s>/]")
_MERGE_TAG = re.compile(rb'<(?:\w+:)?mergeCell\s+ref="([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?"')
_ROW_TAG = re.compile(rb"<(?:\w+:)?row\s([^>]*)>")
_ROW_NUMBER = re.compile(rb'\br="(\d+)"')
_HIDDEN = re.compile(rb'\bhidden="(?:1|true)"')


def _sheet_hints(path: Path, member: str | None) -> tuple[bool, list[tuple[str, int, str, int]], set[int]]:
    """(whether the sheet's XML holds any formula, its merged ranges, its hidden rows), scanned as bytes in blocks:
    cheap, so the common sheet with none of them is read once."""
    if member is None:
        return True, [], set()
    formulas, tail = False, b""
    merged: set[tuple[bytes, ...]] = set()
    hidden: set[int] = set()
    with zipfile.ZipFile(path) as archive, archive.open(member.lstrip("/")) as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            chunk = tail + block  # the last 256 bytes again: a tag split across two blocks is found whole
            formulas = formulas or _FORMULA_TAG.search(chunk) is not None
            merged.update(m.groups() for m in _MERGE_TAG.finditer(chunk))
            if b"hidden" in chunk:
                for attributes in _ROW_TAG.findall(chunk):
                    number = _ROW_NUMBER.search(attributes)
                    if number and _HIDDEN.search(attributes):
                        hidden.add(int(number.group(1)))
            tail = chunk[-256:]
    ranges = {(a.decode(), int(b), (c or a).decode(), int(d or b)) for a, b, c, d in merged}
    return formulas, sorted(ranges, key=lambda r: (r[1], r[0])), hidden


def _formula_cells(path: Path) -> dict[int, list[int]]:
    """{sheet row: [column index]} of every formula cell (a second read, only for sheets that hold formulas)."""
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=False)
    try:
        cells: dict[int, list[int]] = {}
        for number, row in enumerate(workbook.worksheets[0].iter_rows(), start=1):
            for index, cell in enumerate(row):
                if getattr(cell, "data_type", None) == "f":
                    cells.setdefault(number, []).append(index)
        return cells
    finally:
        workbook.close()


def _column_name(header: list[str] | None, index: int) -> str:
    from openpyxl.utils import get_column_letter

    letter = get_column_letter(index + 1)
    return f"column {header[index]} ({letter})" if header and index < len(header) else f"column {letter}"


def _xlsx_table(
    path: Path, sheet: Any, formulas: dict[int, list[int]], merged: list[tuple[str, int, str, int]], hint: str = ""
) -> Table:
    if merged:
        from openpyxl.utils import column_index_from_string

        first, row, last, end = merged[0]
        names: list[str] | None = None
        for values in sheet.iter_rows(min_row=1, max_row=1, values_only=True):
            names = [_cell(value).strip() for value in values]
        more = f" ({len(merged)} merged ranges in all)" if len(merged) > 1 else ""
        raise AdapterError(
            f"{path} row {row} {_column_name(names, column_index_from_string(first) - 1)}: merged cells "
            f"{first}{row}:{last}{end}{more}; the rows under a merged cell read as empty: unmerge them "
            "(fill each cell with its value), expected one value per cell"
        )
    header: list[str] | None = None
    rows: list[list[str]] = []
    numbers: list[int] = []
    blank = 0
    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        for index in formulas.get(number, ()):
            if index >= len(values) or values[index] is None:
                raise AdapterError(
                    f"{path} row {number} {_column_name(header, index)}: formula without a cached value (the "
                    "file was written by a program that does not compute formulas); open and save it in "
                    "Excel/WPS, or paste the values, expected a value"
                )
        try:
            cells = [_cell(value) for value in values]
        except LongNumber:  # the first such cell of the row, named
            index = next(i for i, value in enumerate(values) if _long_number(value))
            raise AdapterError(
                f"{path} row {number} {_column_name(header, index)}: the number {values[index]!r} has more than "
                f"{EXACT_DIGITS} significant digits, stored as a floating-point number its last digits are not the "
                f"ones typed (Excel keeps {EXACT_DIGITS}); expected text: format the column as Text and enter the "
                "ids again, or export CSV from the program that made them"
            ) from None
        if not any(cell.strip() for cell in cells):
            blank += header is not None
        elif header is None:
            while not cells[-1].strip():
                cells.pop()
            header = [name.strip() for name in cells]
        else:
            if len(cells) < len(header):
                cells += [""] * (len(header) - len(cells))  # a sheet's missing trailing cells are empty
            elif len(cells) > len(header):
                _check_width(f"{path} row {number}", cells, header)
            rows.append(cells)
            numbers.append(number)
    if header is None:
        raise AdapterError(f"{path}: the workbook's first sheet is empty, expected a header row{hint}")
    if not rows:
        raise AdapterError(f"{path}: only a header row, expected data rows after it{hint}")
    return Table(path, header, rows, numbers, "xlsx", blank, hint)


def _lines(path: Path, text: str) -> list[str]:
    """The text's lines: LF or CRLF ends, or CR alone (old Mac / some exports), which is noted in the report."""
    if "\n" not in text and "\r" in text.rstrip("\r"):
        READ_NOTES[str(path)] = {"line_ends": "CR only (classic Mac); each CR read as a line end"}
        return text.split("\r")
    return text.split("\n")


def read_tsv(path: str | Path) -> tuple[list[tuple[int, list[str]]], str]:
    """Tab-separated lines, quoting off (quotes are text), CRLF, LF or CR: [(line number, fields)], encoding."""
    path = Path(path)
    READ_NOTES.pop(str(path), None)
    text, encoding = _read_text(path)
    rows = []
    for number, line in enumerate(_lines(path, text), start=1):
        line = line.rstrip("\r")
        if line.strip():
            rows.append((number, line.split("\t")))
    return rows, encoding


def read_jsonl(path: str | Path) -> tuple[list[tuple[int, Any]], str, str]:
    """JSON Lines → ([(line number, object)], encoding, "line"); a file holding one JSON list → "record" numbers."""
    path = Path(path)
    READ_NOTES.pop(str(path), None)
    text, encoding = _read_text(path)
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise AdapterError(f"{path} line {err.lineno}: not valid JSON ({err.msg}), expected a JSON list") from None
        return list(enumerate(items, start=1)), encoding, "record"
    rows = []
    for number, line in enumerate(_lines(path, text), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            raise AdapterError(
                f"{path} line {number}: not valid JSON ({err.msg} at column {err.colno}), "
                "expected one JSON object per line"
            ) from None
    return rows, encoding, "line"


def read_docx(path: str | Path) -> list[tuple[int, str]]:
    """The paragraphs of a Word document as [(paragraph number, text)], empty paragraphs left out."""
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"{path}: no such file")
    import docx

    try:
        document = docx.Document(str(path))
    except Exception as err:  # python-docx raises several unrelated types for a non-DOCX file
        raise AdapterError(
            f"{path}: not a readable DOCX document ({type(err).__name__}), expected a Word .docx file"
        ) from None
    paragraphs = [(number, p.text.strip()) for number, p in enumerate(document.paragraphs, start=1)]
    paragraphs = [(number, text) for number, text in paragraphs if text]
    if not paragraphs:
        raise AdapterError(f"{path}: the document has no text, expected question and answer paragraphs")
    return paragraphs
