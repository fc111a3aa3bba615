"""Submission files in each competition's own format, from a (voted) predictions file and the adapter's test set.

Each format is one small function (test records + labels → file) found by task name in SUBMITTERS. Rows follow
the test file's order; every test id must have a prediction (else VotingError naming the first missing ids).

- judge: `submit.csv`, GB18030 CSV `数据编号,评判维度,预测分数` like DataFountain 1032's 提交示例.csv (LF line ends).
- cola, qqp: `result_CoLA.txt` / `result_QQP.txt`, one label per line in dev order; prints the gemma-2b seed's
  score (accuracy × 70) when the dev labels are known.
- logic: `upload.jsonl`, the original test JSONL (`--source`) with each question's `answer` filled.
- paper: `submit.csv`, UTF-8 CSV `uuid,Keywords,label` (`--pred` labels, `--keywords` keyword text).
- qa: `answers.jsonl`, one `{"id", "instruction", "input", "answer"}` per test record.
The names in backticks are used when `--out` is a folder.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from pipeline.fileio import atomic_open, read_text
from voting import VotingError, first_items
from voting.extract import TASKS, Task, extract_label, read_predictions_csv

JUDGE_HEADER = ("数据编号", "评判维度", "预测分数")
DEFAULT_NAMES = {"judge": "submit.csv", "cola": "result_CoLA.txt", "qqp": "result_QQP.txt", "logic": "upload.jsonl",
                 "paper": "submit.csv", "qa": "answers.jsonl"}
SEED_SCORE_WEIGHT = 70  # the gemma-2b seed's score: accuracy × 70 for the prediction part


def submission_path(out: str | Path, task: str) -> Path:
    """`out` itself, or `out/<the task's default name>` when `out` is a folder (exists, ends in /, or no suffix)."""
    text = str(out)
    out = Path(out)
    if out.is_dir() or text.endswith(("/", "\\")) or not out.suffix:
        return out / DEFAULT_NAMES[task]
    return out


def labels_by_id(pred_path: str | Path, task: Task, test_records: list[dict], unparsed: str | None = None
                 ) -> dict[str, str]:
    """id → label for every test id, from a predictions file; missing ids and unparsed text are errors."""
    groups = None
    if task.group_col:
        groups = {str(r["id"]): str(r.get(task.group_col, "")) for r in test_records}
    predictions = read_predictions_csv(pred_path, task, groups)
    labels = dict(zip(predictions.ids, predictions.labels, strict=True))
    test_ids = [str(record["id"]) for record in test_records]
    missing = [i for i in test_ids if i not in labels]
    if missing:
        raise VotingError(f"{pred_path}: {len(missing)} ids of the test file have no prediction: "
                          f"{first_items(missing)}")
    extra = len(labels) - len(test_ids)
    if extra:
        print(f"{pred_path}: {extra} predicted ids are not in the test file; ignored", file=sys.stderr)
    unparsed_ids = [i for i in test_ids if labels[i] is None]
    if unparsed_ids:
        if unparsed is None:
            raise VotingError(f"{pred_path}: {len(unparsed_ids)} predictions unparsed ({first_items(unparsed_ids)});"
                              f" fix them or give --unparsed LABEL")
        print(f"{pred_path}: {len(unparsed_ids)} unparsed predictions written as {unparsed!r} "
              f"({first_items(unparsed_ids)})", file=sys.stderr)
        labels.update({i: unparsed for i in unparsed_ids})
    return labels


def write_judge_submission(path: Path, records: list[dict], labels: Mapping[str, str], **_) -> dict:
    """`数据编号,评判维度,预测分数`, GB18030, LF line ends, in the test file's order; scores checked per dimension."""
    task = TASKS["judge"]
    rows = []
    for index, record in enumerate(records):
        record_id, dimension = str(record["id"]), str(record.get("dimension", ""))
        if dimension not in task.group_rules:
            raise VotingError(f"test record {index} id {record_id}: dimension is {dimension!r}, expected one of "
                              f"{', '.join(task.group_rules)}")
        allowed, _ = task.rules_for(dimension)
        if labels[record_id] not in allowed:
            raise VotingError(f"id {record_id}: prediction {labels[record_id]!r} is not a {dimension} score "
                              f"({', '.join(allowed)})")
        rows.append((record_id, dimension, labels[record_id]))
    with atomic_open(path, "w", encoding="gb18030", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(JUDGE_HEADER)
        writer.writerows(rows)
    return {"rows": len(rows)}


def write_glue_submission(path: Path, records: list[dict], labels: Mapping[str, str], task: Task, **_) -> dict:
    """One label per line in dev order; with known dev labels, accuracy and the seed's score (accuracy × 70)."""
    ordered = [labels[str(record["id"])] for record in records]
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("".join(f"{label}\n" for label in ordered))
    summary: dict = {"rows": len(ordered)}
    gold = [extract_label(str(record.get("output", "")), task.labels, task.synonyms)[0] for record in records]
    if all(label is not None for label in gold):
        accuracy = float(np.mean([g == p for g, p in zip(gold, ordered, strict=True)]))
        summary.update(accuracy=accuracy, seed_score=accuracy * SEED_SCORE_WEIGHT)
    else:
        summary["seed_score"] = None  # dev labels unknown (empty output)
    return summary


def write_logic_submission(path: Path, records: list[dict], labels: Mapping[str, str], source: str | None = None,
                           **_) -> dict:
    """The original test JSONL with `answer` filled per question (ids `<problem id>#<question index>`)."""
    if not source:
        raise VotingError("submit logic needs --source round1_test_data.jsonl (the original test JSONL)")
    text, _ = read_text(source)
    problems, missing = [], []
    for line_number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            problem = json.loads(line)
        except json.JSONDecodeError as err:
            raise VotingError(f"{source} line {line_number}: not JSON ({err})") from None
        if "id" not in problem or not isinstance(problem.get("questions"), list):
            raise VotingError(f"{source} line {line_number}: expected an object with id and a questions list")
        for index, question in enumerate(problem["questions"]):
            question_id = f"{problem['id']}#{index}"
            if question_id not in labels:
                missing.append(question_id)
                continue
            answer = labels[question_id]
            options = question.get("options", [])
            if options and not 0 <= ord(answer) - ord("A") < len(options):
                raise VotingError(f"id {question_id}: answer {answer!r} but the question has {len(options)} options "
                                  f"(A–{chr(ord('A') + len(options) - 1)})")
            question["answer"] = answer
        problems.append(problem)
    if missing:
        raise VotingError(f"{source}: {len(missing)} questions have no prediction: {first_items(missing)}")
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(problem, ensure_ascii=False) + "\n" for problem in problems))
    return {"rows": len(problems), "questions": sum(len(p["questions"]) for p in problems)}


def write_paper_submission(path: Path, records: list[dict], labels: Mapping[str, str],
                           keywords: Mapping[str, str] | None = None, **_) -> dict:
    """`uuid,Keywords,label` (UTF-8) in the test file's order."""
    if keywords is None:
        raise VotingError("submit paper needs --keywords KW.csv (id,prediction holding each abstract's keywords)")
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("uuid", "Keywords", "label"))
        for record in records:
            record_id = str(record["id"])
            writer.writerow((record_id, " ".join(keywords[record_id].split()), labels[record_id]))
    return {"rows": len(records)}


def write_qa_submission(path: Path, records: list[dict], labels: Mapping[str, str], **_) -> dict:
    """JSONL, one `{"id", "instruction", "input", "answer"}` per test record, in order."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        for record in records:
            row = {"id": str(record["id"]), "instruction": record.get("instruction", ""),
                   "input": record.get("input", ""), "answer": labels[str(record["id"])]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"rows": len(records)}


SUBMITTERS: dict[str, Callable[..., dict]] = {
    "judge": write_judge_submission,
    "cola": write_glue_submission,
    "qqp": write_glue_submission,
    "logic": write_logic_submission,
    "paper": write_paper_submission,
    "qa": write_qa_submission,
}
