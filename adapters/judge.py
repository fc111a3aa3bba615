"""DataFountain 1032 text judging: one short instruction per 评判维度, the answer is a single digit.

CSV (GB18030 / UTF-8 / UTF-8 with BOM) or XLSX with columns 数据编号, 创作要求, 评判维度, 待评判内容[, 标注分值].
Records keep the dimension in an extra `"dimension"` key (LLaMA-Factory ignores unmapped keys): the task's group
column, with a score scale per dimension, read by label scoring, the vote and the submission writer. Rows with empty
待评判内容 are kept and counted. The submission is `submit.csv`, GB18030 `数据编号,评判维度,预测分数` like the
competition's 提交示例.csv.
`--dev-share 0.1` (seeded by `--seed`) holds a tenth of `--train` out as NAME_dev, stratified within each dimension
(each dimension's scores keep their shares): the labelled split `make report GOLD=data/NAME_dev.json` scores against.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any

from adapters.registry import register_adapter
from core.fileio import SafeCsvWriter, atomic_open
from core.tasks import BINARY, BINARY_SYNONYMS, TaskError, TaskSpec, register_task

from .readers import RowError, SkipRow, read_table
from .records import Part, add_hold_out_arguments, build_records, held_out_parts, quoted

ID, BRIEF, DIMENSION, CONTENT, SCORE = "数据编号", "创作要求", "评判维度", "待评判内容", "标注分值"
COLUMNS = (ID, BRIEF, DIMENSION, CONTENT)

# Short on purpose: prompt length is the main cost of CPU inference, and the answer is one digit.
INSTRUCTIONS = {
    "流畅性": "给下文的流畅性打分，1-5分，5分最流畅，只输出数字。",
    "规范性": "按创作要求给文章的规范性打分，1-5分，5分最规范，只输出数字。",
    "选择题": "模型回复选对了输出1，选错了输出0。",
}
SCORES_1_5 = ("1", "2", "3", "4", "5")
SCALES = {"流畅性": SCORES_1_5, "规范性": SCORES_1_5, "选择题": BINARY}
GROUP_COL = "dimension"
EXPECTED = {SCORES_1_5: "an integer 1–5", BINARY: "0 or 1"}
VALID = {dimension: frozenset(scale) for dimension, scale in SCALES.items()}
SUBMISSION_HEADER = ("数据编号", "评判维度", "预测分数")
DIMENSIONS = {dimension: dimension for dimension in INSTRUCTIONS}  # one shared string per dimension, not one per row


def parse_score(value: str, dimension: str) -> str:
    """'5', ' 5 ', '5.0' → '5'; anything else outside the dimension's scale is a RowError."""
    if value in VALID[dimension]:
        return value
    text = value.strip()
    if text.endswith(".0"):
        text = text[:-2]
    if text not in VALID[dimension]:
        raise RowError(f"{SCORE} is {quoted(value)}, expected {EXPECTED[SCALES[dimension]]} for {dimension}")
    return text


def judge_record(row: dict[str, str], labelled: bool) -> dict[str, Any]:
    """One competition row → one alpaca record (output '' for an unlabelled test row)."""
    dimension = DIMENSIONS.get(row[DIMENSION]) or DIMENSIONS.get(row[DIMENSION].strip())
    if dimension is None:
        raise RowError(f"{DIMENSION} is {quoted(row[DIMENSION])}, expected one of 流畅性, 规范性, 选择题")
    record_id = row[ID].strip()
    if not record_id:
        raise RowError(f"{ID} is empty, expected the row's id (predictions are joined back by it)")
    content = row[CONTENT].strip()
    if dimension == "流畅性":
        text = content
    elif dimension == "规范性":
        text = f"要求：{row[BRIEF].strip()}\n文章：{content}"
    else:
        text = f"{row[BRIEF].strip()}\n{content}"
    score = row.get(SCORE, "")
    if score in VALID[dimension]:
        output = score
    elif score.strip():
        output = parse_score(score, dimension)
    elif labelled:
        raise SkipRow(f"{SCORE} is empty, a {dimension} training row needs a score")
    else:
        output = ""
    return {
        "id": record_id,
        "instruction": INSTRUCTIONS[dimension],
        "input": text,
        "output": output,
        GROUP_COL: dimension,
    }


dimension_label = itemgetter(GROUP_COL, "output")  # the report counts scores per dimension


def convert(path: Path, split: str, args: argparse.Namespace) -> list[Part]:
    table = read_table(path)
    labelled = split != "test"
    columns = table.require(COLUMNS + (SCORE,) if labelled else COLUMNS, () if labelled else (SCORE,))
    records, skipped = build_records(table.dicts(columns), partial(judge_record, labelled=labelled), table.where)
    content_at, dimension_at = table.header.index(CONTENT), table.header.index(DIMENSION)
    empty = Counter(row[dimension_at].strip() for row in table.rows if not row[content_at].strip())
    notes = {"encoding": table.encoding, "empty_content": dict(sorted(empty.items())), "blank_rows": table.blank_rows}
    part = Part(split, path, records, len(table.rows), skipped, label_of=dimension_label, notes=notes)
    return held_out_parts(part, args, stratum=dimension_label, kept="stratified by dimension and score")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_hold_out_arguments(parser, "stratified within each dimension (its scores keep their shares)")


def write_submission(path: Path, records: list[dict[str, Any]], labels: Mapping[str, str], **_: Any) -> dict[str, Any]:
    """`数据编号,评判维度,预测分数`, GB18030, LF line ends, in the test file's order; scores checked per dimension."""
    rows = []
    for index, record in enumerate(records):
        record_id, dimension = str(record["id"]), str(record.get(GROUP_COL, ""))
        if dimension not in SCALES:
            raise TaskError(
                f"test record {index} id {record_id}: {GROUP_COL} is {dimension!r}, expected one of {', '.join(SCALES)}"
            )
        if labels[record_id] not in SCALES[dimension]:
            raise TaskError(
                f"id {record_id}: prediction {labels[record_id]!r} is not a {dimension} score "
                f"({', '.join(SCALES[dimension])})"
            )
        rows.append((record_id, dimension, labels[record_id]))
    with atomic_open(path, "w", encoding="gb18030", newline="") as handle:
        writer = SafeCsvWriter(handle)  # no cell starts a spreadsheet formula
        writer.writerow(SUBMISSION_HEADER)
        writer.writerows(rows)
    return {"rows": len(rows)}


register_adapter("judge", convert, "DataFountain 1032 text judging (流畅性/规范性/选择题), CSV or XLSX", add_arguments)
register_task(
    TaskSpec(
        "judge",
        ("0", *SCORES_1_5),
        group_col=GROUP_COL,
        groups={dimension: (scale, BINARY_SYNONYMS if scale == BINARY else {}) for dimension, scale in SCALES.items()},
        tie_breaker_only=("选择题",),
        submission_name="submit.csv",
        write_submission=write_submission,
        help="text judging: a 1–5 score per 流畅性/规范性 row, 0/1 per 选择题 row",
        language="zh",
    )
)
