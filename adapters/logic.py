"""Logic reasoning JSONL: one record per question, options lettered A: …, the answer is the letter.

Each line is `{"problem", "questions": [{"question", "options": [...], "answer"}], "id"}`; the test file has no
`answer` (output ""). Record ids are `<problem id>#<question index>` (index from 0).
"""

from __future__ import annotations

import argparse
import json
import re
import string
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from adapters.registry import register_adapter
from core import first_items
from core.fileio import atomic_files, read_text
from core.tasks import TaskError, TaskSpec, register_task

from .readers import RowError, read_jsonl
from .records import Part, build_records, output_label, quoted

INSTRUCTION = "阅读题目，选出正确选项，只输出选项字母。"
# Option letters, one spelling for the adapter, label scoring and the vote: the competition's questions have 2 to 5
# options. More letters would make answers such as "I don't know" parse as option I.
LETTERS = tuple(string.ascii_uppercase[:5])
OPTION_LINE = re.compile(r"^([A-Z]): ", re.MULTILINE)  # how logic_records writes each option


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
            raise RowError(
                f"{where}.options is {quoted(options)}, expected a list of 2 to {len(LETTERS)} options "
                f"(A–{LETTERS[-1]})"
            )
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
        records.append(
            {
                "id": f"{problem_id}#{index}",
                "instruction": INSTRUCTION,
                "input": f"{text}\n\n{_text(item['question'], f'{where}.question')}\n" + "\n".join(lines),
                "output": answer.strip().upper(),
            }
        )
    return records


def convert(path: Path, split: str, args: argparse.Namespace) -> list[Part]:
    lines, encoding, unit = read_jsonl(path)
    labelled = split != "test"
    records, skipped = build_records(lines, partial(logic_records, labelled=labelled), lambda n: f"{path} {unit} {n}")
    notes = {"encoding": encoding, "problems": len(lines), "questions": len(records)}
    return [Part(split, path, records, len(lines), skipped, label_of=output_label, notes=notes)]


register_adapter("logic", convert, "logic-reasoning JSONL: one record per question, output the option letter")


def record_options(record: Mapping[str, Any]) -> tuple[str, ...]:
    """A record's option letters, read back from the "A: …" lines `logic_records` wrote (A first, consecutive)."""
    letters = tuple(dict.fromkeys(OPTION_LINE.findall(str(record.get("input", "")))))
    if len(letters) >= 2 and letters == LETTERS[: len(letters)]:
        return letters
    return LETTERS  # every letter where the options cannot be read back


def problem_of(record: Mapping[str, Any]) -> str:
    """The problem a question belongs to: its id is `<problem id>#<question index>` (logic_records)."""
    return str(record["id"]).rsplit("#", 1)[0]


ANSWER_LIST = "answer.txt"  # beside upload.jsonl: one letter per question in test order, as the original client wrote


def write_submission(
    path: Path,
    records: list[dict[str, Any]],
    labels: Mapping[str, str],
    source: str | None = None,
    limit: int | None = None,
    **_: Any,
) -> dict[str, Any]:
    """The original test JSONL (`--source`) with `answer` filled per question (ids `<problem id>#<index>`), and
    answer.txt beside it (one letter per line, in the test records' order).

    `limit` (a trial run, LIMIT=N: `records` are the test file's first N): only the problems holding those records
    are written, and their other questions keep no answer.
    """
    if not source:
        raise TaskError("submit logic needs --source round1_test_data.jsonl (the original test JSONL)")
    wanted = {str(record["id"]) for record in records}
    source_text = read_text(source)[0]
    problems: list[dict[str, Any]] = []
    missing: list[str] = []
    for line_number, line in enumerate(source_text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            problem = json.loads(line)
        except json.JSONDecodeError as err:
            raise TaskError(f"{source} line {line_number}: not JSON ({err})") from None
        if "id" not in problem or not isinstance(problem.get("questions"), list):
            raise TaskError(f"{source} line {line_number}: expected an object with id and a questions list")
        question_ids = [f"{problem['id']}#{index}" for index in range(len(problem["questions"]))]
        if limit is not None and wanted.isdisjoint(question_ids):
            continue
        for question_id, question in zip(question_ids, problem["questions"], strict=True):
            if limit is not None and question_id not in wanted:
                continue
            if question_id not in labels:
                missing.append(question_id)
                continue
            answer, options = labels[question_id], question.get("options", [])
            if options and answer not in LETTERS[: len(options)]:
                raise TaskError(
                    f"id {question_id}: answer {answer!r} but the question has {len(options)} options "
                    f"(A–{LETTERS[len(options) - 1]})"
                )
            question["answer"] = answer
        problems.append(problem)
    if missing:
        raise TaskError(f"{source}: {len(missing)} questions have no prediction: {first_items(missing)}")
    answers = Path(path).with_name(ANSWER_LIST)
    with atomic_files() as batch:  # both files or neither: never a new upload.jsonl beside an old answer.txt
        with batch.open(path, "w", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(problem, ensure_ascii=False) + "\n" for problem in problems))
        with batch.open(answers, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{labels[str(record['id'])]}\n" for record in records))
    summary: dict[str, Any] = {"rows": len(problems), "questions": len(records), "answers": str(answers)}
    if limit is not None:
        summary["partial"] = f"LIMIT={limit}: the problems of the first {len(records)} questions only (a trial run)"
    return summary


register_task(
    TaskSpec(
        "logic",
        LETTERS,
        candidates_of=record_options,
        fold_group_of=problem_of,
        submission_name="upload.jsonl",
        submission_companions=(ANSWER_LIST,),
        write_submission=write_submission,
        help="logic multiple choice: the option letter",
        language="zh",
    )
)
