"""Shared adapter plumbing, written once: reading files, refusing bad input, the report, the registry write.

An adapter module reads its files with `read_table` / `read_tsv` / `read_jsonl` / `read_docx`, maps each row
with a pure function through `build_records`, and returns `Part`s. `convert` then checks every part, writes
the data files, the report and, last, the `dataset_info.json` entries, each atomically.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import random
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from json.encoder import encode_basestring as encode_string  # json's own C string encoder
from operator import itemgetter
from pathlib import Path
from typing import Any

from pipeline.fileio import ENCODINGS, DecodeError, atomic_open, atomic_write_json, read_text

SPLITS = ("train", "dev", "test")
REGISTRY = "dataset_info.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
ZIP_MAGIC = b"PK\x03\x04"


class AdapterError(Exception):
    """Bad input refused: the message names the file, the row or line, the column and what was expected."""


class RowError(ValueError):
    """Raised by a pure row function; `build_records` prefixes the file and row to make an AdapterError."""


class SkipRow(Exception):  # a signal, not an error: the row is dropped and reported
    """Raised by a row function for a row that is left out of the output; the reason goes into the report."""


# ---------------------------------------------------------------- reading


def _read_text(path: Path) -> tuple[str, str]:
    """Decode UTF-8 (BOM or not) or GB18030; undecodable bytes: fileio.read_text's message (file, line, byte)."""
    if not path.is_file():
        raise AdapterError(f"{path}: no such file")
    data = path.read_bytes()
    for encoding in ENCODINGS:  # decode once here; fileio.read_text decodes twice, and is kept for the message
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        try:
            text, encoding = read_text(path)
        except DecodeError as err:
            raise AdapterError(str(err)) from None
    del data
    if not text.strip():
        raise AdapterError(f"{path}: the file is empty, expected data")
    return text, encoding


@dataclass
class Table:
    """A CSV or XLSX sheet: header row plus data rows, every cell a string ('' for empty)."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    numbers: list[int] | None = None  # XLSX: each row's sheet row; CSV: the line each row starts on (found lazily)
    encoding: str = "xlsx"
    blank_rows: int = 0

    def row_number(self, index: int) -> int:
        """The row as a spreadsheet shows it (header = row 1)."""
        return self.numbers[index] if self.encoding == "xlsx" else index + 2

    def where(self, index: int) -> str:
        """'train.csv row 17', plus the text line where a CSV row starts when that differs (multi-line cells)."""
        if self.encoding == "xlsx":
            return f"{self.path} row {self.numbers[index]}"
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
            )
        return required + [name for name in optional if name in self.header]

    def dicts(self, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
        """(row index, {column: value}) for the given columns; built with map/zip, the hot path of big files."""
        positions = [self.header.index(name) for name in columns]
        rows: Iterable[Any] = self.rows
        if positions != list(range(len(self.header))):
            rows = map(itemgetter(*positions), rows) if len(positions) > 1 else ((row[positions[0]],) for row in rows)
        return enumerate(map(dict, map(zip, repeat(columns), rows)))  # widths were checked on reading


def read_table(path: str | Path) -> Table:
    """Read a CSV (UTF-8, UTF-8 with BOM or GB18030) or an XLSX workbook (first sheet) into a Table."""
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
    for encoding in ENCODINGS:  # a GB18030 file fails UTF-8 at its first Chinese byte, usually in the header
        try:
            with open(path, encoding=encoding, newline="") as handle:
                reader = csv.reader(handle)
                rows = list(reader)
            break
        except UnicodeDecodeError:
            continue
        except csv.Error as err:
            raise AdapterError(
                f"{path} line {reader.line_num}: malformed CSV ({err}), expected comma-separated fields"
            ) from None
    else:
        _read_text(path)  # raises the AdapterError naming the line and byte that neither encoding decodes
        raise AdapterError(f"{path}: undecodable text, expected UTF-8 or GB18030")
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


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a score typed as 5 comes back from openpyxl as 5 or 5.0
    return str(value)


def _read_xlsx(path: Path) -> Table:
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as err:
        raise AdapterError(
            f"{path}: not a readable XLSX workbook ({err}), expected an .xlsx file saved by Excel/WPS"
        ) from None
    try:
        header: list[str] | None = None
        rows: list[list[str]] = []
        numbers: list[int] = []
        blank = 0
        for number, values in enumerate(workbook.worksheets[0].iter_rows(values_only=True), start=1):
            cells = [_cell(value) for value in values]
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
    finally:
        workbook.close()
    if header is None:
        raise AdapterError(f"{path}: the workbook's first sheet is empty, expected a header row")
    if not rows:
        raise AdapterError(f"{path}: only a header row, expected data rows after it")
    return Table(path, header, rows, numbers, "xlsx", blank)


def read_tsv(path: str | Path) -> tuple[list[tuple[int, list[str]]], str]:
    """Tab-separated lines, quoting off (quotes are text), CRLF or LF: [(line number, fields)], encoding."""
    path = Path(path)
    text, encoding = _read_text(path)
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            rows.append((number, line.split("\t")))
    return rows, encoding


def read_jsonl(path: str | Path) -> tuple[list[tuple[int, Any]], str, str]:
    """JSON Lines → ([(line number, object)], encoding, "line"); a file holding one JSON list → "record" numbers."""
    path = Path(path)
    text, encoding = _read_text(path)
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise AdapterError(f"{path} line {err.lineno}: not valid JSON ({err.msg}), expected a JSON list") from None
        return list(enumerate(items, start=1)), encoding, "record"
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
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


# ---------------------------------------------------------------- records


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


def sample(records: list[dict[str, Any]], n: int, seed: int, stratify: bool) -> list[dict[str, Any]]:
    """A seeded sample of n records, in file order; stratified keeps the output label proportions."""
    if n >= len(records):
        return records
    rng = random.Random(seed)
    if not stratify:
        return [records[i] for i in sorted(rng.sample(range(len(records)), n))]
    groups: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups[record["output"]].append(index)
    labels = sorted(groups)
    exact = {label: n * len(groups[label]) / len(records) for label in labels}
    quota = {label: int(exact[label]) for label in labels}
    for label in sorted(labels, key=lambda lab: exact[lab] - quota[lab], reverse=True)[: n - sum(quota.values())]:
        quota[label] += 1  # largest remainder, so the quotas add up to n
    chosen = [i for label in labels for i in rng.sample(groups[label], quota[label])]
    return [records[i] for i in sorted(chosen)]


# ---------------------------------------------------------------- report


def _text_key(records: list[dict[str, Any]]) -> Callable[[dict[str, Any]], tuple[str, ...]]:
    """What makes two records the same text: (system,) instruction and input."""
    if records and "system" in records[0]:
        return itemgetter("system", "instruction", "input")
    return itemgetter("instruction", "input")


def _duplicates(part: Part) -> dict[str, Any]:
    ids = [record["id"] for record in part.records]
    dup_ids = [] if len(set(ids)) == len(ids) else [key for key, count in Counter(ids).items() if count > 1]
    first: dict[tuple[str, ...], dict[str, Any]] = {}
    setdefault = first.setdefault
    dup_texts = conflicting = 0
    examples = []
    for key, record in zip(map(_text_key(part.records), part.records), part.records, strict=True):
        seen = setdefault(key, record)
        if seen is record:
            continue
        dup_texts += 1
        if seen["output"] != record["output"]:
            conflicting += 1
        if len(examples) < 5:
            examples.append([seen["id"], record["id"]])
    return {
        "duplicate_ids": {"count": len(dup_ids), "examples": dup_ids[:5]},
        "duplicate_texts": {"count": dup_texts, "conflicting_outputs": conflicting, "examples": examples},
    }


def drop_duplicates(part: Part) -> None:
    """Drop records whose whole text and output repeat an earlier one; each drop is listed in `skipped`."""
    seen: dict[tuple[str, ...], str] = {}
    kept = []
    text_key = _text_key(part.records)
    for record in part.records:
        key = (*text_key(record), record["output"])
        if key in seen:
            part.skipped.append(
                {"where": f"id {record['id']}", "reason": f"duplicate of id {seen[key]} (--drop-duplicates)"}
            )
        else:
            seen[key] = record["id"]
            kept.append(record)
    part.notes["duplicates_dropped"] = len(part.records) - len(kept)
    part.records = kept


def _overlap(parts: list[Part], name: str) -> dict[str, Any]:
    """Dev/test records whose text also appears in the train set of the same subset."""
    result = {}
    trains = {part.subset: part for part in parts if part.split == "train"}
    for part in parts:
        train = trains.get(part.subset)
        if part.split == "train" or train is None:
            continue
        keys = set(map(_text_key(train.records), train.records))
        text_key = _text_key(part.records)
        hits = [record["id"] for record in part.records if text_key(record) in keys]
        result[part.dataset_name(name)] = {"with": train.dataset_name(name), "count": len(hits), "examples": hits[:5]}
    return result


def _labels(part: Part) -> dict[str, int] | None:
    if part.label_of is None:
        return None
    counts = Counter(map(part.label_of, part.records))
    shown = {}
    for key, count in counts.items():  # a tuple key such as (dimension, score) shows as "流畅性 5"
        parts = key if isinstance(key, tuple) else (key,)
        shown[" ".join(part or "(unlabelled)" for part in parts)] = count
    return dict(sorted(shown.items()))


def prompt_text(record: dict[str, Any]) -> str:
    """The text LLaMA-Factory builds from an alpaca record (without the chat template): prompt\\nquery + output."""
    prompt = "\n".join(text for text in (record["instruction"], record["input"]) if text)
    history = "".join(q + a for q, a in record.get("history", []))
    return record.get("system", "") + history + prompt + record["output"]


def load_tokenizer(spec: str | None) -> tuple[Any, str]:
    """(tokenizer or None, note). spec None: models/smollm2 (from the working directory) when present; 'none': skip."""
    if spec is None:
        default = Path("models") / "smollm2"
        if not (default / "tokenizer_config.json").is_file() and not (default / "tokenizer.json").is_file():
            return None, f"skipped: no --tokenizer given and {default} not found"
        spec = str(default)
    if spec.lower() == "none":
        return None, "skipped: --tokenizer none"
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as err:
        raise AdapterError(f"--tokenizer {spec}: cannot load a tokenizer there ({err})") from None
    return tokenizer, spec


def template_overhead(tokenizer: Any, with_system: bool) -> int:
    """Tokens the chat template adds around one (system,) user, assistant turn; 0 when there is no template.

    Without a system turn this includes any default system prompt the template inserts, as LLaMA-Factory does.
    """
    turns = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
    if with_system:
        turns.insert(0, {"role": "system", "content": ""})
    try:
        ids = tokenizer.apply_chat_template(turns, tokenize=True)
    except Exception:  # no chat template, or one that refuses an empty turn
        return 0
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def token_stats(records: list[dict[str, Any]], tokenizer: Any, overhead: int, cutoff_len: int) -> dict[str, Any]:
    """Token-length percentiles of whole examples (text + template overhead), batched through a fast tokenizer."""
    lengths: list[int] = []
    batch = 2048
    for start in range(0, len(records), batch):
        texts = [prompt_text(record) for record in records[start : start + batch]]
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        lengths.extend(len(ids) + overhead for ids in encoded)
    if not lengths:
        return {"count": 0}
    lengths.sort()

    def pct(q: float) -> int:
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))]

    return {
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "max": lengths[-1],
        "mean": round(sum(lengths) / len(lengths), 1),
        "cutoff_len": cutoff_len,
        "over_cutoff": sum(length > cutoff_len for length in lengths),
    }


def fit_inputs(parts: list[Part], tokenizer: Any, cutoff_len: int) -> None:
    """Trim each record's `input` to its head so the templated example fits `cutoff_len` (`--fit-cutoff`).

    LLaMA-Factory truncates an over-long prompt by its tail, which drops the chat template's end of turn and the
    assistant header too: the model is then trained and asked to answer in the middle of the user's text. Trimming
    here keeps the template whole. Every record gets the same room for its answer (the longest output in the run),
    so train and test rows keep the same share of text; the template overhead is the length report's, which errs on
    the short side. The count goes to each part's notes as `fitted_to_cutoff`.
    """
    if tokenizer is None:
        raise AdapterError("--fit-cutoff needs a tokenizer: give --tokenizer PATH (the model's)")
    records = [record for part in parts for record in part.records]
    if not records:
        return
    outputs = tokenizer([record["output"] for record in records], add_special_tokens=False)["input_ids"]
    answer = max(len(ids) for ids in outputs) + 1  # + end of turn
    overheads = {with_system: template_overhead(tokenizer, with_system) for with_system in (False, True)}
    batch = 2048
    for part in parts:
        fitted = 0
        for start in range(0, len(part.records), batch):
            chunk = part.records[start : start + batch]
            rest = [prompt_text({**record, "input": "", "output": ""}) for record in chunk]
            rest_ids = tokenizer(rest, add_special_tokens=False)["input_ids"]
            inputs = tokenizer([record["input"] for record in chunk], add_special_tokens=False,
                               return_offsets_mapping=True)  # fmt: skip
            for offset, record in enumerate(chunk):
                ids, spans = inputs["input_ids"][offset], inputs["offset_mapping"][offset]
                room = cutoff_len - overheads["system" in record] - answer - len(rest_ids[offset]) - 2  # "\n" joins
                if len(ids) <= room:
                    continue
                if room <= 0:
                    raise AdapterError(f"{part.source}: record {record.get('id', start + offset)}: the instruction "
                                       f"alone needs more than --cutoff-len {cutoff_len} tokens; raise it")  # fmt: skip
                record["input"] = record["input"][: spans[room - 1][1]]
                fitted += 1
        part.notes["fitted_to_cutoff"] = fitted


def build_report(
    task: str, name: str, parts: list[Part], tokenizer: Any = None, token_note: str = "", cutoff_len: int = 1024
) -> dict[str, Any]:
    datasets = {}
    overheads = {}
    for part in parts:
        entry: dict[str, Any] = {
            "file": f"{part.dataset_name(name)}.json",
            "source": str(part.source),
            "rows_in": part.rows_in,
            "rows_out": len(part.records),
            "skipped": len(part.skipped),
            "skipped_rows": part.skipped,
            "labels": _labels(part),
            **part.notes,
            **_duplicates(part),
        }
        if entry["labels"] is None:
            entry["labels"] = "free text"
        if tokenizer is not None:
            with_system = "system" in part.records[0]
            if with_system not in overheads:
                overheads[with_system] = template_overhead(tokenizer, with_system)
            entry["tokens"] = token_stats(part.records, tokenizer, overheads[with_system], cutoff_len)
        datasets[part.dataset_name(name)] = entry
    tokens = {"note": token_note}
    if tokenizer is not None:
        tokens = {
            "tokenizer": token_note,
            "cutoff_len": cutoff_len,
            "template_tokens": max(overheads.values()),
            "method": "batched fast tokenizer over system+history+instruction\\ninput+output, plus the tokens its "
            "chat template adds (an estimate of LLaMA-Factory's cutoff_len check, within a few tokens)",
        }
    return {"task": task, "name": name, "datasets": datasets, "overlap": _overlap(parts, name), "tokens": tokens}


def format_report(report: dict[str, Any]) -> str:
    """The short on-screen table."""
    head = ["dataset", "rows in", "out", "skipped", "dup ids", "dup texts", "overlap", "tok p50/p95/max", ">cutoff"]
    table = [head]
    for dataset, entry in report["datasets"].items():
        overlap = report["overlap"].get(dataset, {}).get("count", "-")
        tokens = entry.get("tokens")
        tok = f"{tokens['p50']}/{tokens['p95']}/{tokens['max']}" if tokens and "p50" in tokens else "-"
        over = tokens.get("over_cutoff", "-") if tokens else "-"
        table.append([
            dataset, entry["rows_in"], entry["rows_out"], entry["skipped"], entry["duplicate_ids"]["count"],
            entry["duplicate_texts"]["count"], overlap, tok, over,
        ])  # fmt: skip
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in table]
    for dataset, entry in report["datasets"].items():
        if isinstance(entry["labels"], dict):
            shown = ", ".join(f"{label or '(none)'}: {count}" for label, count in entry["labels"].items())
            lines.append(f"{dataset} labels: {shown}")
        for key, value in entry.items():
            if value and (key.startswith("empty_") or key in ("sampled", "first_rows", "duplicates_dropped")):
                lines.append(f"{dataset} {key}: {value}")
        dups = entry["duplicate_texts"]
        if dups["count"]:
            first = " = ".join(dups["examples"][0])
            lines.append(
                f"{dataset} duplicate texts: {dups['count']} ({dups['conflicting_outputs']} with another output), "
                f"e.g. ids {first}; kept (--drop-duplicates drops exact repeats from train)"
            )
        for skip in entry["skipped_rows"][:3]:
            lines.append(f"{dataset} skipped {skip['where']}: {skip['reason']}")
        if entry["skipped"] > 3:
            lines.append(f"{dataset} … {entry['skipped'] - 3} more skipped rows in the report")
    if "note" in report["tokens"]:
        lines.append(f"token lengths {report['tokens']['note']}")
    else:
        tokens = report["tokens"]
        lines.append(f"token lengths: {tokens['tokenizer']} (+{tokens['template_tokens']} template tokens)")
    return "\n".join(lines)


# ---------------------------------------------------------------- writing


def columns_for(records: list[dict[str, Any]]) -> dict[str, str]:
    """The full alpaca column mapping: a partial `columns` makes LLaMA-Factory null the keys it leaves out."""
    columns = {"prompt": "instruction", "query": "input", "response": "output"}
    # mapped but absent would make LLaMA-Factory raise KeyError, so map system/history only when present
    if records and "system" in records[0]:
        columns["system"] = "system"
    if records and "history" in records[0]:
        columns["history"] = "history"
    return columns


def registry_entry(file_name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"file_name": file_name, "formatting": "alpaca", "columns": columns_for(records)}


def read_registry(data_dir: Path) -> dict[str, Any]:
    path = data_dir / REGISTRY
    if not path.is_file():
        return {}
    try:
        registry = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AdapterError(f"{path}: not valid JSON ({err}); fix or remove it, nothing was written") from None
    if not isinstance(registry, dict):
        raise AdapterError(f"{path}: expected a JSON object of dataset entries, found {type(registry).__name__}")
    return registry


_KEYS: dict[str, str] = {}  # '"id": ' for each key seen: records share a handful of keys


def _key(key: str) -> str:
    encoded = _KEYS.get(key)
    if encoded is None:
        encoded = _KEYS[key] = f"{encode_string(key)}: "
    return encoded


def encode_record(record: dict[str, Any]) -> str:
    """json.dumps(record, ensure_ascii=False), faster for the flat string records adapters make."""
    return (
        "{"
        + ", ".join(
            [
                _key(key) + (encode_string(value) if value.__class__ is str else json.dumps(value, ensure_ascii=False))
                for key, value in record.items()
            ]
        )
        + "}"
    )


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """A JSON list with one record per line: readable, diffable, and fast to write."""
    encode = encode_record
    chunk = 4096  # join a few thousand lines at a time: fast, without a second copy of the whole file in memory
    with atomic_open(path, "w", encoding="utf-8") as handle:
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
        if not part.records:
            reasons = "; ".join(f"{s['where']}: {s['reason']}" for s in part.skipped[:3])
            raise AdapterError(
                f"{part.source}: no usable rows for {part.dataset_name(name)}" + (f" ({reasons})" if reasons else "")
            )


def write_outputs(parts: list[Part], name: str, data_dir: Path, report: dict[str, Any]) -> list[str]:
    """Write data files, the report, then the registry (only the NAME_* keys of this run change); all atomic."""
    registry = read_registry(data_dir)  # refuse a broken registry before writing anything
    written = []
    for part in parts:
        dataset = part.dataset_name(name)
        write_records(data_dir / f"{dataset}.json", part.records)
        registry[dataset] = registry_entry(f"{dataset}.json", part.records)
        written.append(dataset)
    report["registered"] = written
    atomic_write_json(data_dir / f"{name}_report.json", report)
    atomic_write_json(data_dir / REGISTRY, registry)
    return written


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise AdapterError(f"--name {name!r}: expected letters, digits, '_', '.' or '-' (it becomes file names)")


# ---------------------------------------------------------------- one run


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
) -> dict[str, Any]:
    """Read and check every file of the run in memory, then write data files, report and registry entries."""
    check_name(name)
    if not files:
        raise AdapterError("no input: give at least one of --train, --dev, --test")
    with _gc_paused():
        parts: list[Part] = []
        for split in SPLITS:
            if split in files:
                parts.extend(adapter.convert(Path(files[split]), split, args))
        check_parts(parts, name)
        if drop_duplicate_rows:
            for part in parts:
                if part.split == "train":
                    drop_duplicates(part)
        read_registry(data_dir)  # a broken dataset_info.json stops the run before any file is written
        tok, note = load_tokenizer(tokenizer)
        if fit_cutoff:
            fit_inputs(parts, tok, cutoff_len)
        report = build_report(adapter.name, name, parts, tok, note, cutoff_len)
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
