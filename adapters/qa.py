"""Question/answer pairs → records whose instruction is the question and output the answer.

Formats, told apart by extension and content:
- XTuner conversation JSONL `{"conversation": [{"system", "input", "output"}, ...]}`: the system prompt is kept;
  earlier turns of a multi-turn conversation go to `history`.
- `{"input", "output"}` JSONL (or a JSON list; `instruction` and `system` are used when present).
- a two-column XLSX/CSV (question, answer), with or without a header row.
- a DOCX whose non-empty paragraphs alternate question, answer (markers such as 问：/答： or Q:/A: are removed).
Ids are `<split>-<line/row number>` (DOCX: `<split>-<pair number>`), or the object's own `id` when it has one.
Rows with an empty question or answer are skipped and reported.
`--dev-share 0.1` (seeded by `--seed`) holds a tenth of `--train` out as NAME_dev, for a file such as gongkao's that
has no dev split; a question asked more than once (the same text) stays wholly on one side, and the report says so.
"""

from __future__ import annotations

import argparse
import json
import re
import zipfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.registry import register_adapter
from core.fileio import atomic_open
from core.tasks import TaskSpec, register_task

from .readers import AdapterError, RowError, SkipRow, read_docx, read_jsonl, read_table
from .records import Part, add_hold_out_arguments, build_records, held_out_parts, quoted

HEADER_WORDS = {
    "question",
    "answer",
    "q",
    "a",
    "问题",
    "答案",
    "问",
    "答",
    "input",
    "output",
    "instruction",
    "prompt",
    "response",
    "query",
    "题目",
    "回答",
    "问句",
    "答句",
}
# only "问：" / "Q:"-style markers: "A、" or "A." may well start a real answer ("A. 北京")
QUESTION_MARK = re.compile(r"^(问题|问|Q|Question)\s*\d*\s*[:：]\s*", re.IGNORECASE)
ANSWER_MARK = re.compile(r"^(答案|答|A|Answer)\s*\d*\s*[:：]\s*", re.IGNORECASE)


def _string(obj: dict[str, Any], key: str, where: str = "") -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{where}{key} is {type(value).__name__} {quoted(value)}, expected a string")
    return value.strip()


def pair_record(record_id: str, question: str, answer: str, system: str | None = None) -> dict[str, Any]:
    if not question:
        raise SkipRow("the question is empty")
    if not answer:
        raise SkipRow("the answer is empty")
    record = {"id": record_id, "instruction": question, "input": "", "output": answer}
    if system is not None:
        record["system"] = system
    return record


def json_record(obj: Any, default_id: str) -> dict[str, Any]:
    """An XTuner conversation or an {"input", "output"} object → one record."""
    if not isinstance(obj, dict):
        raise RowError(f"found a {type(obj).__name__}, expected a JSON object")
    record_id = str(obj["id"]).strip() if obj.get("id") not in (None, "") else default_id
    if "conversation" in obj:
        turns = obj["conversation"]
        if not isinstance(turns, list) or not turns:
            raise RowError(f"conversation is {quoted(turns)}, expected a non-empty list of turns")
        for index, turn in enumerate(turns):
            if not isinstance(turn, dict) or "input" not in turn or "output" not in turn:
                raise RowError(f'conversation[{index}] is {quoted(turn)}, expected {{"input", "output"[, "system"]}}')
        history = [
            [_string(t, "input", f"conversation[{i}]."), _string(t, "output", f"conversation[{i}].")]
            for i, t in enumerate(turns[:-1])
        ]
        last = f"conversation[{len(turns) - 1}]."
        record = pair_record(
            record_id,
            _string(turns[-1], "input", last),
            _string(turns[-1], "output", last),
            _string(turns[0], "system", "conversation[0]."),
        )
        if history:
            record["history"] = history
        return record
    if "output" not in obj or not ("input" in obj or "instruction" in obj):
        raise RowError(f'keys {", ".join(obj) or "none"}, expected {{"conversation": [...]}} or {{"input", "output"}}')
    question = "\n".join(text for text in (_string(obj, "instruction"), _string(obj, "input")) if text)
    system = _string(obj, "system") if "system" in obj else None
    return pair_record(record_id, question, _string(obj, "output"), system)


def _detect(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".docx":
        return "docx"
    if suffix in (".xlsx", ".xlsm", ".csv"):
        return "table"
    if suffix in (".jsonl", ".json"):
        return "json"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return "docx" if "word/document.xml" in archive.namelist() else "table"
    return "json"


def _table_rows(path: Path, split: str) -> tuple[list[tuple[int, Any]], Any, dict[str, Any]]:
    table = read_table(path)
    named = [name for name in table.header if name]
    if len(named) != 2 or len(table.header) != 2:
        raise AdapterError(
            f"{path} row 1: {len(named)} columns ({', '.join(named)}), expected two columns: question, answer"
        )
    has_header = all(name.lower().rstrip(":：") in HEADER_WORDS for name in table.header)
    rows = [(index, values) for index, values in enumerate(table.rows)]
    if not has_header:  # the first row is a question/answer pair too
        rows.insert(0, (-1, table.header))

    def where(index: int) -> str:
        return f"{path} row 1" if index == -1 else table.where(index)

    def number(index: int) -> int:
        return 1 if index == -1 else table.row_number(index)

    items = [(index, (f"{split}-{number(index)}", values[0].strip(), values[1].strip())) for index, values in rows]
    return items, where, {"encoding": table.encoding, "header_row": has_header}


def _docx_rows(path: Path, split: str) -> tuple[list[tuple[int, Any]], Any, dict[str, Any]]:
    paragraphs = read_docx(path)
    if len(paragraphs) % 2:
        number, text = paragraphs[-1]
        raise AdapterError(
            f"{path} paragraph {number}: {quoted(text)} has no answer after it, expected question and answer "
            f"paragraphs to alternate ({len(paragraphs)} non-empty paragraphs)"
        )
    items = []
    for pair in range(len(paragraphs) // 2):
        (q_number, question), (_, answer) = paragraphs[2 * pair], paragraphs[2 * pair + 1]
        if ANSWER_MARK.match(question) and not QUESTION_MARK.match(question):
            raise AdapterError(
                f"{path} paragraph {q_number}: {quoted(question)} is marked as an answer, "
                "expected a question here (questions and answers must alternate)"
            )
        items.append((q_number, (f"{split}-{pair + 1}", QUESTION_MARK.sub("", question), ANSWER_MARK.sub("", answer))))
    return items, lambda n: f"{path} paragraph {n}", {"encoding": "docx", "pairs": len(items)}


def convert(path: Path, split: str, args: argparse.Namespace) -> list[Part]:
    kind = _detect(path)
    if kind == "json":
        lines, encoding, unit = read_jsonl(path)
        items = [(number, (obj, f"{split}-{number}")) for number, obj in lines]
        records, skipped = build_records(items, lambda item: json_record(*item), lambda n: f"{path} {unit} {n}")
        rows_in = len(lines)
        notes: dict[str, Any] = {"encoding": encoding}
    else:
        items, where, notes = (_docx_rows if kind == "docx" else _table_rows)(path, split)
        records, skipped = build_records(items, lambda item: pair_record(*item), where)
        rows_in = len(items)
    # one schema per dataset: LLaMA-Factory needs every mapped column in every record
    for key, default in (("system", str), ("history", list)):
        if any(key in record for record in records):
            for record in records:
                if key not in record:
                    record[key] = default()
    notes["format"] = {"json": "jsonl", "docx": "docx", "table": "two-column table"}[kind]
    notes["multi_turn"] = sum(bool(record.get("history")) for record in records)
    part = Part(split, path, records, rows_in, skipped, label_of=None, notes=notes)
    asked = Counter(map(question_text, records))
    repeated = {question: count for question, count in asked.items() if count > 1}
    kept = (
        f"repeated questions kept on one side: {len(repeated)} questions asked more than once "
        f"({sum(repeated.values())} records), each wholly in train or in dev"
    )
    return held_out_parts(part, args, group=question_text, kept=kept)


def question_text(record: dict[str, Any]) -> str:
    """What makes two records the same question for the hold-out: instruction and input, whitespace collapsed."""
    return " ".join(f"{record['instruction']}\n{record['input']}".split())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_hold_out_arguments(parser, "a repeated question (same text) stays on one side")


register_adapter(
    "qa",
    convert,
    "question/answer pairs: XTuner conversation JSONL, input/output JSONL, XLSX, DOCX",
    add_arguments,
)


def write_submission(path: Path, records: list[dict[str, Any]], labels: Mapping[str, str], **_: Any) -> dict[str, Any]:
    """JSONL, one `{"id", "instruction", "input", "answer"}` per test record, in order."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        for record in records:
            row = {
                "id": str(record["id"]),
                "instruction": record.get("instruction", ""),
                "input": record.get("input", ""),
                "answer": labels[str(record["id"])],
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"rows": len(records)}


register_task(
    TaskSpec(
        "qa",
        None,
        submission_name="answers.jsonl",
        write_submission=write_submission,
        text_metrics="qa",
        language="zh",
        help="question answering: free-text answers (EM, ROUGE-L, BLEU-4)",
    )
)
