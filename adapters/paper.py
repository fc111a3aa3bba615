"""iFLYTEK paper abstracts: one CSV → up to two datasets per split, built from what the file has.

`NAME_cls_{split}`: is the paper medical (`label` 1) or not (0); `NAME_kw_{split}`: its `Keywords`.
Columns `uuid,title,author,abstract[,Keywords][,label]`. A labelled file (train/dev) gives `NAME_cls_*` when it
has `label` and `NAME_kw_*` when it has `Keywords` (a keywords-only train file is fine); one with neither is
refused. A test file gives both (outputs "" where the column is absent), since both get predicted. The prompt holds
the title and abstract (authors add length, not signal); rows with an empty abstract are kept (title only) and
counted in the report. A labelled file without `label` (the public A-board test used as train) writes no
NAME_cls_{split}: the report says so and how to score the labels with the base model instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.registry import register_adapter
from core.fileio import SafeCsvWriter, atomic_open
from core.tasks import BINARY, BINARY_SYNONYMS, TaskError, TaskSpec, register_task

from .readers import AdapterError, RowError, read_table
from .records import Part, build_records, output_label, quoted

COLUMNS = ("uuid", "title", "author", "abstract")
KEYWORDS, LABEL = "Keywords", "label"
CLS_INSTRUCTION = "Is this paper about medicine? Answer 1 for yes, 0 for no."
KW_INSTRUCTION = "List the keywords of this paper, separated by '; '."
SUBSETS = {"cls": LABEL, "kw": KEYWORDS}  # dataset subset → the column its outputs come from


def paper_records(
    row: dict[str, str], labelled: bool, subsets: tuple[str, ...] = ("cls", "kw")
) -> list[dict[str, Any]]:
    """One CSV row → one record per subset (classification, keywords); labelled outputs must be usable."""
    uuid = row["uuid"].strip()
    if not uuid:
        raise RowError("uuid is empty, expected the paper's id")
    label = row.get(LABEL, "").strip()
    if "cls" in subsets and (label or (labelled and LABEL in row)) and label not in BINARY:
        raise RowError(f"{LABEL} is {quoted(row.get(LABEL, ''))}, expected 0 or 1 (1 = medical)")
    keywords = row.get(KEYWORDS, "").strip()
    if "kw" in subsets and labelled and KEYWORDS in row and not keywords:
        raise RowError(f"{KEYWORDS} is empty, expected the paper's keywords in a labelled split")
    text = f"Title: {row['title'].strip()}\nAbstract: {row['abstract'].strip()}"
    records = {
        "cls": {"id": uuid, "instruction": CLS_INSTRUCTION, "input": text, "output": label},
        "kw": {"id": uuid, "instruction": KW_INSTRUCTION, "input": text, "output": keywords},
    }
    return [records[subset] for subset in subsets]


def convert(path: Path, split: str, args: argparse.Namespace) -> list[Part]:
    table = read_table(path)
    labelled = split != "test"
    columns = table.require(COLUMNS, (KEYWORDS, LABEL))
    subsets = tuple(s for s, column in SUBSETS.items() if column in columns) if labelled else tuple(SUBSETS)
    if not subsets:
        raise AdapterError(
            f"{path} row 1 (header): neither {LABEL} nor {KEYWORDS}, expected at least one of them "
            f"in a labelled {split} file (found {', '.join(table.header)})"
        )
    records, skipped = build_records(
        table.dicts(columns), lambda row: paper_records(row, labelled, subsets), table.where
    )
    abstract_at = table.header.index("abstract")
    notes = {"encoding": table.encoding, "empty_abstract": sum(not row[abstract_at].strip() for row in table.rows)}
    if labelled and "cls" not in subsets:
        notes["no_labels"] = no_labels_note(path, split, getattr(args, "name", "NAME"))
    rows_in, step = len(table.rows), len(subsets)
    return [
        Part(
            split,
            path,
            records[k::step],
            rows_in,
            list(skipped),
            subset,
            output_label if subset == "cls" else None,
            dict(notes),
            task="paper" if subset == "cls" else "keywords",
        )
        for k, subset in enumerate(subsets)
    ]


def no_labels_note(path: Path, split: str, name: str) -> str:
    """What a labelled split without `label` means for NAME_cls, and the command that still scores it."""
    if split != "train":
        return f"{path} has no {LABEL} column, so no {name}_cls_{split} is written (no labels to score against)"
    return (
        f"{path} has no {LABEL} column, so no {name}_cls_train is written (make train TASK={name}_cls has "
        f"nothing to learn from); score the labels with the base model instead: make predict TASK={name}_cls "
        "MODE=score ARGS=adapter_name_or_path="
    )


register_adapter("paper", convert, "iFLYTEK paper abstracts CSV → NAME_cls_* (medical 0/1) and NAME_kw_* (keywords)")


def write_submission(
    path: Path,
    records: list[dict[str, Any]],
    labels: Mapping[str, str],
    keywords: Mapping[str, str] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """`uuid,Keywords,label` (UTF-8) in the test file's order: `labels` from NAME_cls, `keywords` from NAME_kw."""
    if keywords is None:
        raise TaskError(
            "submit paper needs the keywords too: --keywords predictions/NAME_kw/MODEL.csv (id,prediction "
            "with each abstract's keywords); make: KEYWORDS=that file, or `make submit-paper NAME=...`"
        )
    empty = [str(record["id"]) for record in records if not keywords[str(record["id"])].split()]
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = SafeCsvWriter(handle)  # no cell starts a spreadsheet formula
        writer.writerow(("uuid", "Keywords", "label"))
        for record in records:
            record_id = str(record["id"])
            writer.writerow((record_id, " ".join(keywords[record_id].split()), labels[record_id]))
    if empty:
        print(f"{path}: {len(empty)} of {len(records)} papers have empty Keywords (they score 0)", file=sys.stderr)
    return {"rows": len(records), "empty_keywords": len(empty)}


register_task(
    TaskSpec(
        "paper",
        BINARY,
        BINARY_SYNONYMS,
        submission_name="submit.csv",
        write_submission=write_submission,
        extra_tasks={"keywords": "keywords"},
        help="paper classification: medical (1) or not (0); the submission adds the keywords",
        language="en",  # English titles and abstracts (iFLYTEK 2023), English instructions
    )
)
register_task(
    TaskSpec(
        "keywords",
        None,
        text_metrics="keywords",
        language="en",  # English titles and abstracts (iFLYTEK 2023), English instructions
        help="keyword extraction: free text, keywords separated by '; ', scored by keyword P/R/F1",
    )
)
