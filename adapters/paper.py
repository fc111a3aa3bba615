"""iFLYTEK paper abstracts: one CSV → two datasets per split.

`NAME_cls_{split}`: is the paper medical (`label` 1) or not (0); `NAME_kw_{split}`: its `Keywords`.
Columns `uuid,title,author,abstract,Keywords[,label]`; train/dev need both `label` and `Keywords`, a test file
may lack either (output ""). The prompt holds the title and abstract (authors add length, not signal); rows
with an empty abstract are kept (title only) and counted in the report.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.fileio import atomic_open
from core.tasks import BINARY, BINARY_SYNONYMS, TaskError, TaskSpec, register_task

from . import register_adapter
from .readers import RowError, read_table
from .records import Part, build_records, output_label, quoted

COLUMNS = ("uuid", "title", "author", "abstract")
KEYWORDS, LABEL = "Keywords", "label"
CLS_INSTRUCTION = "Is this paper about medicine? Answer 1 for yes, 0 for no."
KW_INSTRUCTION = "List the keywords of this paper, separated by '; '."


def paper_records(row: dict[str, str], labelled: bool) -> list[dict[str, Any]]:
    """One CSV row → [classification record, keywords record]; a labelled split needs label and Keywords."""
    uuid = row["uuid"].strip()
    if not uuid:
        raise RowError("uuid is empty, expected the paper's id")
    label = row.get(LABEL, "").strip()
    if (label or labelled) and label not in ("0", "1"):
        raise RowError(f"{LABEL} is {quoted(row.get(LABEL, ''))}, expected 0 or 1 (1 = medical)")
    if labelled and not row[KEYWORDS].strip():
        raise RowError(f"{KEYWORDS} is empty, expected the paper's keywords in a labelled split")
    text = f"Title: {row['title'].strip()}\nAbstract: {row['abstract'].strip()}"
    return [
        {"id": uuid, "instruction": CLS_INSTRUCTION, "input": text, "output": label},
        {"id": uuid, "instruction": KW_INSTRUCTION, "input": text, "output": row.get(KEYWORDS, "").strip()},
    ]


def convert(path: Path, split: str, args: argparse.Namespace) -> list[Part]:
    table = read_table(path)
    labelled = split != "test"
    required = COLUMNS + ((KEYWORDS, LABEL) if labelled else ())
    columns = table.require(required, () if labelled else (KEYWORDS, LABEL))
    records, skipped = build_records(table.dicts(columns), lambda row: paper_records(row, labelled), table.where)
    abstract_at = table.header.index("abstract")
    notes = {"encoding": table.encoding, "empty_abstract": sum(not row[abstract_at].strip() for row in table.rows)}
    rows_in = len(table.rows)
    return [
        Part(split, path, records[0::2], rows_in, skipped, "cls", output_label, dict(notes)),
        Part(split, path, records[1::2], rows_in, list(skipped), "kw", None, dict(notes), task="keywords"),
    ]


register_adapter("paper", convert, "iFLYTEK paper abstracts CSV → NAME_cls_* (medical 0/1) and NAME_kw_* (keywords)")


def write_submission(path: Path, records: list[dict[str, Any]], labels: Mapping[str, str],
                     keywords: Mapping[str, str] | None = None, **_: Any) -> dict[str, Any]:
    """`uuid,Keywords,label` (UTF-8) in the test file's order: `labels` from NAME_cls, `keywords` from NAME_kw."""
    if keywords is None:
        raise TaskError("submit paper needs --keywords KW.csv (id,prediction holding each abstract's keywords)")
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("uuid", "Keywords", "label"))
        for record in records:
            record_id = str(record["id"])
            writer.writerow((record_id, " ".join(keywords[record_id].split()), labels[record_id]))
    return {"rows": len(records)}


register_task(TaskSpec("paper", BINARY, BINARY_SYNONYMS, submission_name="submit.csv", write_submission=write_submission,
                       help="paper classification: medical (1) or not (0); the submission adds the keywords",
                       language="zh"))
register_task(TaskSpec("keywords", None, help="keyword extraction: free text, keywords separated by '; '",
                       language="zh"))
