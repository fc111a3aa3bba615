"""Logic reasoning JSONL: one record per question, options lettered A: …, the answer is the letter.

Each line is `{"problem", "questions": [{"question", "options": [...], "answer"}], "id"}`; the test file has no
`answer` (output ""). Record ids are `<problem id>#<question index>` (index from 0).
"""

from __future__ import annotations

import argparse
import string
from functools import partial
from pathlib import Path
from typing import Any

from . import register_adapter
from .common import Part, RowError, build_records, output_label, quoted, read_jsonl

INSTRUCTION = "阅读题目，选出正确选项，只输出选项字母。"
LETTERS = string.ascii_uppercase


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RowError(f"{what} is {type(value).__name__} {quoted(value)}, expected a string")
    return value.strip()


def logic_records(problem: Any, labelled: bool) -> list[dict[str, Any]]:
    """One problem (a parsed JSON line) → one record per question."""
    if not isinstance(problem, dict):
        raise RowError(f"the line holds a {type(problem).__name__}, expected a JSON object with problem/questions/id")
    for key in ("problem", "questions", "id"):
        if key not in problem:
            raise RowError(f'missing key "{key}", expected {{"problem", "questions", "id"}}')
    problem_id, text = str(problem["id"]).strip(), _text(problem["problem"], "problem")
    questions = problem["questions"]
    if not isinstance(questions, list) or not questions:
        raise RowError(f"questions is {quoted(questions)}, expected a non-empty list")
    records = []
    for index, item in enumerate(questions):
        where = f"questions[{index}]"
        if not isinstance(item, dict) or "question" not in item or "options" not in item:
            raise RowError(f'{where} is {quoted(item)}, expected {{"question", "options"[, "answer"]}}')
        options = item["options"]
        if not isinstance(options, list) or not 2 <= len(options) <= len(LETTERS):
            raise RowError(f"{where}.options is {quoted(options)}, expected a list of 2 to 26 options")
        letters = LETTERS[: len(options)]
        lines = [
            f"{letter}: {_text(option, f'{where}.options[{i}]')}"
            for i, (letter, option) in enumerate(zip(letters, options, strict=True))
        ]
        answer = item.get("answer")
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            if labelled:
                raise RowError(
                    f"{where}.answer is missing, expected a letter {letters[0]}–{letters[-1]} in a labelled split"
                )
            answer = ""
        elif not isinstance(answer, str) or answer.strip().upper() not in letters:
            raise RowError(
                f"{where}.answer is {quoted(answer)}, expected a letter {letters[0]}–{letters[-1]} "
                f"({len(options)} options)"
            )
        records.append({
            "id": f"{problem_id}#{index}",
            "instruction": INSTRUCTION,
            "input": f"{text}\n\n{_text(item['question'], f'{where}.question')}\n" + "\n".join(lines),
            "output": answer.strip().upper(),
        })  # fmt: skip
    return records


def convert(path: Path, split: str, args: argparse.Namespace) -> list[Part]:
    lines, encoding, unit = read_jsonl(path)
    labelled = split != "test"
    records, skipped = build_records(lines, partial(logic_records, labelled=labelled), lambda n: f"{path} {unit} {n}")
    notes = {"encoding": encoding, "problems": len(lines), "questions": len(records)}
    return [Part(split, path, records, len(lines), skipped, label_of=output_label, notes=notes)]


register_adapter("logic", convert, "logic-reasoning JSONL: one record per question, output the option letter")
