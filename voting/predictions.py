"""Predictions and gold files read into labels, with their task's extraction (core/extract.py) applied.

A predictions file is CSV `id,prediction[,prob_<label>...][,extras]`; gold is CSV `id,label` or an adapter dataset
(JSON records with `id`, `output`). Both are read strictly: required columns, unique non-empty ids, UTF-8 or GB18030.
"""

from __future__ import annotations

import codecs
import csv
import io
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import InputError
from core.extract import EMPTY, OUT_OF_SET, UNKNOWN_GROUP, UNPARSED, extract_labels
from core.fileio import DecodeError, formula_raw_frame, read_text
from core.records import read_records
from core.tasks import TaskSpec
from voting import VotingError, first_items

PROB_SUM_TOLERANCE = 0.01  # a row's prob_ columns sum to 1 within this (rounded values, e.g. 3 × 0.33)


@dataclass
class Predictions:
    """One predictions (or gold) file after extraction; `frame` keeps the file's columns as read."""

    path: Path
    frame: pd.DataFrame
    labels: np.ndarray  # object, None where unparsed
    groups: np.ndarray | None = None
    rows: np.ndarray | None = None  # each frame row's line in the file (header = 1); None: in file order

    def row_number(self, index: int) -> int:
        """The file line of the index-th frame row (files aligned to another's order keep their own lines)."""
        return int(self.rows[index]) if self.rows is not None else index + 2

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def ids(self) -> np.ndarray:
        return self.frame["id"].to_numpy(dtype=object)

    @property
    def unparsed_ids(self) -> list[str]:
        return self.ids[pd.isna(self.labels)].tolist()

    @property
    def empty_ids(self) -> list[str]:
        """Ids of empty free-text answers: answers that score 0, not abstentions."""
        return self.ids[np.asarray([label == "" for label in self.labels], dtype=bool)].tolist()

    @property
    def extra_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c not in ("id", "prediction") and not c.startswith("prob_")]

    @property
    def prob_labels(self) -> list[str]:
        return [c[len("prob_") :] for c in self.frame.columns if c.startswith("prob_")]

    def probabilities(self, label_order: Sequence[str]) -> np.ndarray:
        """(rows, labels) float matrix of the `prob_<label>` columns in `label_order`; absent or empty: NaN.

        Checked (`check_probabilities`): numbers in [0, 1], each row summing to 1, `prediction` at the row's top."""
        out = np.full((len(self.frame), len(label_order)), np.nan)
        for k, label in enumerate(label_order):
            column = f"prob_{label}"
            if column not in self.frame.columns:
                continue
            values = pd.to_numeric(self.frame[column].replace("", np.nan), errors="coerce")
            bad = values.isna() & (self.frame[column] != "")
            if bad.any():
                self._refuse(bad.to_numpy(), f"{column} is {self.frame[column][bad].iloc[0]!r}, expected a number")
            out[:, k] = values.to_numpy(dtype=float)
        self.check_probabilities(out, label_order)
        return out

    def check_probabilities(self, probs: np.ndarray, label_order: Sequence[str]) -> None:
        """Refuse a probability that is not finite or outside [0, 1] (percentages), a row whose probabilities do
        not sum to 1 (± PROB_SUM_TOLERANCE; a row all empty or all 0 abstains), and a parsed `prediction` that is
        not its own row's most probable label."""
        for k, label in enumerate(label_order):
            column = probs[:, k]
            bad = ~np.isnan(column) & ~((column >= 0) & (column <= 1))  # inf, -inf, 90, -0.1
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                self._refuse(
                    bad,
                    f"prob_{label} is {self.frame[f'prob_{label}'].iloc[row]!r}, expected a probability between "
                    "0 and 1 (not a percentage)",
                )
        filled = np.nan_to_num(probs, nan=0.0)
        total = filled.sum(axis=1)
        voting = total > 0
        bad = voting & (np.abs(total - 1) > PROB_SUM_TOLERANCE)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            columns = [f"prob_{label}" for label in label_order if f"prob_{label}" in self.frame.columns]
            raise VotingError(
                f"{self.where(row)}: {'+'.join(columns)} sum to {total[row]:.6g}, expected 1 "
                f"(± {PROB_SUM_TOLERANCE}); {int(bad.sum())} such rows"
            )
        index = {label: k for k, label in enumerate(label_order)}
        labels = pd.Series(self.labels, dtype=object)
        codes = labels.map(index).fillna(-1).to_numpy(dtype=np.int64)  # -1: unparsed, or a label with no column
        parsed = voting & labels.notna().to_numpy()
        own = np.where(codes >= 0, filled[np.arange(len(codes)), np.maximum(codes, 0)], 0.0)
        bad = parsed & (own < filled.max(axis=1) - 1e-6)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            top = label_order[int(np.argmax(filled[row]))]
            raise VotingError(
                f"{self.where(row)}: prediction is {self.frame['prediction'].iloc[row]!r} (label "
                f"{self.labels[row]}, prob {own[row]:.6g}) but its most probable label is {top} "
                f"(prob_{top} {filled[row].max():.6g}); prediction and prob_ columns must come from the same "
                f"scoring; {int(bad.sum())} such rows"
            )

    def where(self, index: int) -> str:
        """'preds.csv row 7 id TE5': where the index-th frame row is in its file."""
        return f"{self.path} row {self.row_number(index)} id {self.frame['id'].iloc[index]}"

    def _refuse(self, bad: np.ndarray, problem: str) -> None:
        row = int(np.flatnonzero(bad)[0])
        more = f"; {int(bad.sum())} such rows" if bad.sum() > 1 else ""
        raise VotingError(f"{self.where(row)}: {problem}{more}")


def _row_of(mask: pd.Series) -> int:
    """The file line of the first True row (the header is line 1)."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 2


def read_csv_frame(
    path: str | Path, required: Sequence[str], unique_ids: bool = True, same_ids: np.ndarray | None = None
) -> pd.DataFrame:
    """A CSV (UTF-8 or GB18030) as strings, checked: the required columns, at least one row, unique non-empty ids.

    UTF-8 files take Arrow's columnar reader; anything it does not take as it is (GB18030, ragged rows, repeated or
    unnamed header fields) is read by pandas' parser, whose messages the errors quote. `same_ids`: ids already
    checked (another model's file); a file whose id column equals them row for row shares that array and needs no
    second check.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise VotingError(f"{path}: no such file") from None
    frame, checked = _arrow_frame(data, same_ids)
    if frame is None:
        frame = _pandas_frame(path, required)
    frame.columns = [str(column).strip() for column in frame.columns]
    formula_raw_frame(frame, "'" if b"'" in data else "")  # undo the `'` our CSV writers put before =, +, -, @
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise VotingError(f"{path}: header is {','.join(frame.columns)}; expected the columns {','.join(required)}")
    if frame.empty:
        raise VotingError(f"{path}: header only, no rows")
    if not checked:
        check_ids(path, frame["id"], unique_ids)
    return frame


def _arrow_frame(data: bytes, same_ids: np.ndarray | None = None) -> tuple[pd.DataFrame | None, bool]:
    """(the CSV as object columns of str via pyarrow.csv, whether its ids are `same_ids`: then the frame holds that
    very array); (None, False) where the file needs the pandas path."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
    try:
        header = next(csv.reader([body.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8")]))
    except (UnicodeDecodeError, StopIteration, csv.Error):
        return None, False
    if not all(header) or len(set(header)) < len(header):  # pandas names these "Unnamed: 1", "a.1"
        return None, False
    # ids and probabilities are mostly distinct; labels and groups repeat, so a dictionary makes them cheap to convert
    types = {
        name: pa.string() if name == "id" or name.startswith("prob_") else pa.dictionary(pa.int32(), pa.string())
        for name in header
    }
    try:
        table = pacsv.read_csv(
            pa.BufferReader(body),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # not UTF-8, ragged rows, empty: pandas says which
        return None, False
    if table.column_names != header:
        return None, False
    shared = (
        "id" in header
        and same_ids is not None
        and len(same_ids) == table.num_rows
        and table.column("id").equals(pa.chunked_array([same_ids], pa.string()))
    )
    columns = {
        name: same_ids if shared and name == "id" else _objects(column)
        for name, column in zip(header, table.columns, strict=True)
    }
    return pd.DataFrame(columns, copy=False), shared


def _objects(column) -> np.ndarray:
    """An Arrow string (or dictionary-of-string) column as a numpy object array of str."""
    import pyarrow as pa

    if pa.types.is_dictionary(column.type):
        return np.asarray(column.to_pandas(), dtype=object)  # a Categorical: one str per distinct value
    return column.to_numpy(zero_copy_only=False)


def _pandas_frame(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """pandas' C parser on the decoded text (UTF-8 or GB18030): the reader of record for what Arrow does not take."""
    try:
        text, _ = read_text(path)
    except DecodeError as err:
        raise VotingError(str(err)) from None
    if not text.strip():
        raise VotingError(f"{path}: empty file, expected a header {','.join(required)} and rows")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise VotingError(f"{path}: not a readable CSV ({err})") from None


def check_ids(path: str | Path, ids: pd.Series, unique: bool = True) -> None:
    """Raise VotingError naming the first rows with an empty or (when `unique`) a repeated id."""
    empty = ids == ""
    if empty.any():
        raise VotingError(f"{path} row {_row_of(empty)}: empty id")
    if not unique:
        return
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        raise VotingError(
            f"{path}: duplicate ids {first_items(pd.unique(ids[duplicated]))} (first at row {_row_of(duplicated)})"
        )


def labels_or_error(
    path: Path,
    frame: pd.DataFrame,
    column: str,
    task: TaskSpec,
    groups: np.ndarray | None,
    strict: bool = False,
    refuse_outside: bool = False,
) -> np.ndarray:
    """Extract `frame[column]`. Gold (`strict`): every value must be a label. Predictions: a value outside the task's
    labels ("3333" for a 1–5 score) or unparsed text abstains (None, counted by report_unparsed); a row whose group
    the task does not know is bad input either way; `refuse_outside` (a submission) refuses values outside too.
    A free-text task's empty answer is the answer "" in predictions (it scores 0) and refused in gold."""
    extracted = extract_labels(frame[column].to_numpy(dtype=object), task, groups)
    labels = extracted.labels
    for status in (UNKNOWN_GROUP, OUT_OF_SET, UNPARSED, EMPTY):
        bad = extracted.status == status
        if (
            not bad.any()
            or (status in (UNPARSED, EMPTY) and not strict)
            or (status == OUT_OF_SET and not (strict or refuse_outside))
        ):
            continue
        row = int(np.flatnonzero(bad)[0])
        where = f"{path} {_record_name(path, row)} id {frame['id'].iloc[row]}"
        group = None if groups is None else groups[row]
        if status == UNKNOWN_GROUP:
            raise VotingError(f"{where}: {task.group_col} is {group!r}, expected one of {', '.join(task.groups)}")
        allowed, _ = task.rules_for(group)
        expected = (
            "a non-empty answer"
            if allowed is None
            else f"a {task.name} label ({', '.join(allowed)}" + (f" for {group})" if group else ")")
        )
        raise VotingError(
            f"{where}: {column} is {frame[column].iloc[row]!r}, expected {expected}; "
            f"{int(bad.sum())} such rows, ids {first_items(frame['id'][bad])}"
        )
    outside = extracted.status == OUT_OF_SET
    if outside.any():
        print(
            f"{path}: {int(outside.sum())} {column}s outside the {task.name} labels abstain, e.g. "
            f"{frame[column][outside].iloc[0]!r} (ids {first_items(frame['id'][outside])})",
            file=sys.stderr,
        )
    return labels


def _record_name(path: Path, row: int) -> str:
    """`row N` (the CSV line, header = 1) or `record N` (0-based, JSON) for the row-th record."""
    return f"record {row}" if Path(path).suffix.lower() == ".json" else f"row {row + 2}"


def group_values(frame: pd.DataFrame, task: TaskSpec, groups: Mapping[str, str] | None) -> np.ndarray | None:
    """The task's group (judge: dimension) per row: the file's own column, else the `groups` id → group map."""
    if not task.group_col:
        return None
    if task.group_col in frame.columns:
        return frame[task.group_col].to_numpy(dtype=object)
    if groups:
        return frame["id"].map(groups).fillna("").to_numpy(dtype=object)
    return None


def read_predictions_csv(
    path: str | Path,
    task: TaskSpec,
    groups: Mapping[str, str] | None = None,
    refuse_outside: bool = False,
    same_ids: np.ndarray | None = None,
) -> Predictions:
    """A predictions file (`id,prediction[,prob_*][,extras]`) with the task's extraction applied to `prediction`;
    values outside the labels abstain (None), or are refused with `refuse_outside`; `same_ids`: another file's
    checked ids (read_csv_frame)."""
    path = Path(path)
    frame = read_csv_frame(path, ("id", "prediction"), same_ids=same_ids)
    row_groups = group_values(frame, task, groups)
    labels = labels_or_error(path, frame, "prediction", task, row_groups, refuse_outside=refuse_outside)
    return Predictions(path, frame, labels, row_groups)


def read_dataset_json(path: str | Path) -> list[dict]:
    """An adapter dataset (core.records.read_records), its errors as VotingError."""
    try:
        return read_records(path)
    except InputError as err:
        raise VotingError(str(err)) from None


def read_gold(path: str | Path, task: TaskSpec, strict: bool = True) -> Predictions:
    """Gold labels: CSV `id,label`, or an adapter dataset JSON (`id`, `output`); every label must parse, or with
    `strict` False an unlabelled row (a test split's empty output) is None."""
    path = Path(path)
    if path.suffix.lower() in (".json", ".jsonl") or _looks_like_json(path):
        records = read_dataset_json(path)
        if any("output" not in record for record in records):
            index = next(i for i, record in enumerate(records) if "output" not in record)
            raise VotingError(f"{path} record {index} id {records[index]['id']}: no output, expected the gold label")
        frame = pd.DataFrame({"id": [str(r["id"]) for r in records], "label": [str(r["output"]) for r in records]})
        if task.group_col and any(task.group_col in r for r in records):
            frame[task.group_col] = [str(r.get(task.group_col, "")) for r in records]
    else:
        frame = read_csv_frame(path, ("id", "label"))
    row_groups = group_values(frame, task, None)
    labels = labels_or_error(path, frame, "label", task, row_groups, strict=strict)
    if task.free_text:  # an empty gold answer is an unlabelled row, not the answer ""
        labels = np.array([None if label == "" else label for label in labels], dtype=object)
    return Predictions(path, frame.rename(columns={"label": "prediction"}), labels, row_groups)


def _looks_like_json(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"["
    except OSError:
        return False


def report_unparsed(predictions: Predictions) -> int:
    """Print how many answers of a file abstain (unparsed or outside the labels; stderr) and return the count; empty
    free-text answers are counted apart (they are answers that score 0, not abstentions)."""
    empty = predictions.empty_ids
    if empty:
        print(
            f"{predictions.path}: {len(empty)} of {len(predictions.labels)} answers are empty, "
            f"they score 0 (ids {first_items(empty)})",
            file=sys.stderr,
        )
    ids = predictions.unparsed_ids
    if ids:
        print(
            f"{predictions.path}: {len(ids)} of {len(predictions.labels)} predictions unparsed or outside the "
            f"labels, they abstain (ids {first_items(ids)})",
            file=sys.stderr,
        )
    return len(ids)


def aligned_predictions(files: Sequence[Predictions]) -> list[Predictions]:
    """The files with rows in the first file's id order; VotingError when their id sets differ."""
    first = files[0]
    reference = pd.Index(first.ids)
    out = [first]
    for other in files[1:]:
        if len(other.ids) == len(reference) and (other.ids == first.ids).all():
            out.append(other)  # the usual case: same ids in the same order
            continue
        index = pd.Index(other.ids)
        only_first, only_other = reference.difference(index, sort=False), index.difference(reference, sort=False)
        if len(only_first) or len(only_other):
            parts = []
            if len(only_first):
                parts.append(f"{len(only_first)} ids only in {first.path} ({first_items(only_first)})")
            if len(only_other):
                parts.append(f"{len(only_other)} ids only in {other.path} ({first_items(only_other)})")
            raise VotingError(f"{first.path} and {other.path} have different ids: {'; '.join(parts)}")
        order = index.get_indexer(reference)
        lines = other.rows if other.rows is not None else np.arange(len(other.ids)) + 2
        out.append(
            Predictions(
                other.path,
                other.frame.iloc[order].reset_index(drop=True),
                other.labels[order],
                None if other.groups is None else other.groups[order],
                lines[order],
            )
        )
    check_same_groups(out)
    return out


def check_same_groups(files: Sequence[Predictions]) -> None:
    """Aligned files must agree on each row's group (judge: dimension): its rules pick the labels and the tie-break."""
    with_groups = [(f, np.asarray(f.groups, dtype=object)) for f in files if f.groups is not None]
    for other, other_groups in with_groups[1:]:
        first, first_groups = with_groups[0]
        differ = np.asarray(first_groups != other_groups, dtype=bool)
        if differ.any():
            row = int(np.flatnonzero(differ)[0])
            raise VotingError(
                f"id {first.ids[row]}: {first.path} says {first_groups[row]!r} but {other.path} says "
                f"{other_groups[row]!r} for its group; {int(differ.sum())} rows disagree, the files "
                "must come from the same test set"
            )
