"""GLUE CoLA and QQP TSVs → English yes/no records with output "0"/"1" (registered as `cola` and `qqp`).

CoLA: no header, 4 tab-separated fields (source, label, original mark, sentence), read with quoting off;
ids are `<split>-<line number>`. A GLUE test file (`index<TAB>sentence` header) keeps its index as id.
QQP: header `id qid1 qid2 question1 question2 is_duplicate` (test: `id question1 question2`), LF or CRLF.
`--max-train N` keeps a seeded sample of train (`--stratify` keeps the label balance), `--first-dev N` the
first N dev rows, as in the gemma-2b seed.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.registry import register_adapter
from core.extract import extract_label
from core.fileio import atomic_open
from core.tasks import BINARY, BINARY_SYNONYMS, TaskSpec, register_task

from .readers import AdapterError, RowError, duplicate_columns, read_tsv
from .records import Part, build_records, output_label, quoted, sample

COLA_INSTRUCTION = "Is this sentence grammatically acceptable? Answer 1 for yes, 0 for no."
QQP_INSTRUCTION = "Do these two questions ask the same thing? Answer 1 for yes, 0 for no."
COLA_FIELDS = ("source", "label", "mark", "sentence")
QQP_COLUMNS = ("id", "question1", "question2")
QQP_LABEL = "is_duplicate"


def parse_label(value: str, column: str) -> str:
    if value.strip() not in ("0", "1"):
        raise RowError(f"{column} is {quoted(value)}, expected 0 or 1")
    return value.strip()


def cola_record(row: dict[str, str]) -> dict[str, Any]:
    """{id, sentence[, label]} → record; an unlabelled (GLUE test) row gets output ''."""
    label = parse_label(row["label"], "column 2 (label)") if "label" in row else ""
    return {"id": row["id"], "instruction": COLA_INSTRUCTION, "input": row["sentence"].strip(), "output": label}


def qqp_record(row: dict[str, str]) -> dict[str, Any]:
    label = parse_label(row[QQP_LABEL], QQP_LABEL) if QQP_LABEL in row else ""
    if not row["id"].strip():
        raise RowError("id is empty, expected the pair's id")
    text = f"Q1: {row['question1'].strip()}\nQ2: {row['question2'].strip()}"
    return {"id": row["id"].strip(), "instruction": QQP_INSTRUCTION, "input": text, "output": label}


def _cola_rows(path: Path, split: str, lines: list[tuple[int, list[str]]]):
    if lines[0][1][:2] == ["index", "sentence"]:  # GLUE's unlabelled test.tsv
        for number, fields in lines[1:]:
            _check_fields(path, number, fields, ("index", "sentence"))
            yield number, {"id": fields[0].strip(), "sentence": fields[1]}
        return
    for number, fields in lines:
        _check_fields(path, number, fields, COLA_FIELDS, "; CoLA files have no header")
        yield number, {"id": f"{split}-{number}", "label": fields[1], "sentence": fields[3]}


def _check_fields(path: Path, number: int, fields: list[str], expected: tuple[str, ...], hint: str = "") -> None:
    if len(fields) != len(expected):
        raise AdapterError(
            f"{path} line {number}: {len(fields)} tab-separated fields, expected {len(expected)} "
            f"({', '.join(expected)}){hint}"
        )


def _qqp_rows(path: Path, split: str, lines: list[tuple[int, list[str]]]):
    header = [name.strip().lstrip("\ufeff") for name in lines[0][1]]
    required = list(QQP_COLUMNS) + ([QQP_LABEL] if split != "test" else [])
    missing = [name for name in required if name not in header]
    if missing:
        raise AdapterError(
            f"{path} line {lines[0][0]} (header): missing column {', '.join(missing)}; expected "
            f"{', '.join(required)}, found {', '.join(header)}"
        )
    duplicate_columns(path, header, f"line {lines[0][0]} (header)")
    columns = required + ([QQP_LABEL] if split == "test" and QQP_LABEL in header else [])
    positions = [header.index(name) for name in columns]
    for number, fields in lines[1:]:
        _check_fields(path, number, fields, tuple(header))
        yield number, {name: fields[pos] for name, pos in zip(columns, positions, strict=True)}


def _convert(task: str, path: Path, split: str, args: argparse.Namespace) -> list[Part]:
    lines, encoding = read_tsv(path)
    rows_of, to_record = (_cola_rows, cola_record) if task == "cola" else (_qqp_rows, qqp_record)
    rows = list(rows_of(path, split, lines))
    records, skipped = build_records(rows, to_record, lambda n: f"{path} line {n}")
    rows_in = len(rows)
    texts = ("sentence",) if task == "cola" else ("question1", "question2")
    notes: dict[str, Any] = {
        "encoding": encoding,
        "empty_text": sum(any(not row[key].strip() for key in texts) for _, row in rows),  # kept, counted
    }
    max_train, first_dev = getattr(args, "max_train", None), getattr(args, "first_dev", None)
    if split == "train" and max_train is not None and max_train < len(records):
        seed, stratify = getattr(args, "seed", 42), getattr(args, "stratify", False)
        records = sample(records, max_train, seed, stratify)
        way = "stratified by label" if stratify else "uniform"
        notes["sampled"] = f"{len(records)} of {rows_in} rows (--max-train, seed {seed}, {way})"
    if split == "dev" and first_dev is not None and first_dev < len(records):
        records = records[:first_dev]
        notes["first_rows"] = f"first {len(records)} of {rows_in} rows (--first-dev)"
    return [Part(split, path, records, rows_in, skipped, label_of=output_label, notes=notes)]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-train", type=positive_int, metavar="N", help="keep a seeded sample of N train rows")
    parser.add_argument("--seed", type=int, default=42, help="seed of the --max-train sample (default 42)")
    parser.add_argument("--stratify", action="store_true", help="--max-train keeps the 0/1 label balance")
    parser.add_argument("--first-dev", type=positive_int, metavar="N", help="keep the first N dev rows (e.g. 150)")


def convert_cola(path: Path, split: str, args: argparse.Namespace) -> list[Part]:
    return _convert("cola", path, split, args)


def convert_qqp(path: Path, split: str, args: argparse.Namespace) -> list[Part]:
    return _convert("qqp", path, split, args)


SEED_SCORE_WEIGHT = 70  # the gemma-2b seed's exam score: accuracy × 70 for the prediction part
COLA_SYNONYMS = {
    **BINARY_SYNONYMS,
    "acceptable": "1",
    "unacceptable": "0",
    "grammatical": "1",
    "ungrammatical": "0",
    "可接受": "1",
    "不可接受": "0",
}
QQP_SYNONYMS = {
    **BINARY_SYNONYMS,
    "duplicate": "1",
    "not duplicate": "0",
    "not_duplicate": "0",
    "相同": "1",
    "不同": "0",
}


def write_submission(
    path: Path, records: list[dict[str, Any]], labels: Mapping[str, str], task: TaskSpec, **_: Any
) -> dict[str, Any]:
    """One label per line in dev order; with known dev labels, accuracy and the seed's score (accuracy × 70)."""
    ordered = [labels[str(record["id"])] for record in records]
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("".join(f"{label}\n" for label in ordered))
    summary: dict[str, Any] = {"rows": len(ordered)}
    gold = [extract_label(str(record.get("output", "")), task.labels, task.synonyms)[0] for record in records]
    if all(label is not None for label in gold):
        accuracy = sum(g == p for g, p in zip(gold, ordered, strict=True)) / len(ordered)
        summary.update(accuracy=accuracy, seed_score=accuracy * SEED_SCORE_WEIGHT)
    else:
        summary["seed_score"] = None  # dev labels unknown (empty output)
    return summary


register_adapter("cola", convert_cola, "GLUE CoLA TSV (no header): grammatical acceptability 0/1", add_arguments)
register_adapter("qqp", convert_qqp, "GLUE QQP TSV (with header): duplicate question pairs 0/1", add_arguments)
register_task(
    TaskSpec(
        "cola",
        BINARY,
        COLA_SYNONYMS,
        submission_name="result_CoLA.txt",
        write_submission=write_submission,
        metric="mcc",  # GLUE's figure for CoLA: accuracy rewards the majority label (70% acceptable)
        help="CoLA: is the sentence acceptable (1) or not (0)",
    )
)
register_task(
    TaskSpec(
        "qqp",
        BINARY,
        QQP_SYNONYMS,
        submission_name="result_QQP.txt",
        write_submission=write_submission,
        help="QQP: are the two questions duplicates (1) or not (0)",
    )
)
