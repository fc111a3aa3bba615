"""From model text to labels: each task's label set, the extraction rule, and the readers for predictions and gold.

`extract_label("答案是B。", LETTERS)` → ("B", "ok"). The rule, in order (first that applies wins):
1. the whole answer (NFKC-normalised, surrounding punctuation stripped) is a label, or a synonym ("yes" → "1");
2. the whole answer is a bare value of the label's kind outside the set ("7" for 1–5, "F" for A–E) → out_of_set;
3. a cue word followed by a label: "Score: 4", "答案是B", "评分为4分", "answer is (C)";
4. exactly one distinct label appears as a standalone token ("我给4分" → 4; "4 or 5" is ambiguous);
otherwise the answer is unparsed. Free-text tasks (qa, keywords) keep the stripped text; empty text is unparsed.
"""

from __future__ import annotations

import functools
import io
import json
import re
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.fileio import DecodeError, read_text
from voting import VotingError, first_items

OK, UNPARSED, OUT_OF_SET = "ok", "unparsed", "out_of_set"

SCORES_1_5 = ("1", "2", "3", "4", "5")
BINARY = ("0", "1")
LETTERS = ("A", "B", "C", "D", "E")
BINARY_SYNONYMS = {
    "yes": "1", "no": "0", "true": "1", "false": "0", "y": "1", "n": "0",
    "是": "1", "否": "0", "对": "1", "错": "0", "正确": "1", "错误": "0",
}
COLA_SYNONYMS = {
    **BINARY_SYNONYMS, "acceptable": "1", "unacceptable": "0", "grammatical": "1", "ungrammatical": "0",
    "可接受": "1", "不可接受": "0",
}
QQP_SYNONYMS = {
    **BINARY_SYNONYMS, "duplicate": "1", "not duplicate": "0", "not_duplicate": "0", "相同": "1", "不同": "0",
}


@dataclass(frozen=True)
class Task:
    """A task's labels (None: free text) in their order, synonyms, and per-group label subsets (judge)."""

    name: str
    labels: tuple[str, ...] | None
    synonyms: Mapping[str, str] = field(default_factory=dict)
    group_col: str | None = None
    group_rules: Mapping[str, tuple[tuple[str, ...], Mapping[str, str]]] = field(default_factory=dict)

    @property
    def free_text(self) -> bool:
        return self.labels is None

    @property
    def numeric(self) -> bool:
        return self.labels is not None and all(_is_int(label) for label in self.labels)

    def rules_for(self, group: str | None) -> tuple[tuple[str, ...], Mapping[str, str]]:
        """(labels, synonyms) for a row of `group`; KeyError for a group the task does not know."""
        if not self.group_rules or group is None or group == "":
            return self.labels, self.synonyms
        return self.group_rules[group]


TASKS: dict[str, Task] = {
    "judge": Task(
        "judge", ("0",) + SCORES_1_5, group_col="dimension",
        group_rules={"流畅性": (SCORES_1_5, {}), "规范性": (SCORES_1_5, {}), "选择题": (BINARY, BINARY_SYNONYMS)},
    ),
    "cola": Task("cola", BINARY, COLA_SYNONYMS),
    "qqp": Task("qqp", BINARY, QQP_SYNONYMS),
    "paper": Task("paper", BINARY, BINARY_SYNONYMS),
    "logic": Task("logic", LETTERS),
    "qa": Task("qa", None),
    "keywords": Task("keywords", None),
}
RAW = Task("raw", None)  # no --task/--labels: the stripped text is the label, and no set is checked


def task_from_args(task: str | None = None, labels: str | None = None, text: bool = False) -> Task:
    """The Task the CLI options name: `--task NAME`, `--labels 1,2,3`, `--text`, or RAW."""
    if sum(bool(option) for option in (task, labels, text)) > 1:
        raise VotingError("give only one of --task, --labels, --text")
    if task:
        if task not in TASKS:
            raise VotingError(f"--task {task}: unknown task, expected one of {', '.join(TASKS)}")
        return TASKS[task]
    if labels:
        values = tuple(dict.fromkeys(value.strip() for value in labels.split(",") if value.strip()))
        if len(values) < 2:
            raise VotingError(f"--labels {labels!r}: expected at least two comma-separated labels")
        return Task("labels", values, BINARY_SYNONYMS if set(values) == set(BINARY) else {})
    if text:
        return Task("text", None)
    return RAW


def _is_int(value: str) -> bool:
    return bool(re.fullmatch(r"-?\d+", value))


_STRIP = " \t\r\n.,;:!?。，、；：！？\"'`()[]{}<>（）【】「」『』《》“”‘’*#"
_CUE = re.compile(
    r"(?:答案|选项|选择|分数|评分|得分|打分|分值|预测|结果|结论|标签|判断|(?i:score|answer|rating|label|prediction"
    r"|option|choice|grade))\s*(?:(?:是|为|应为|应该是|应该为|(?i:is|should be)|:|=)\s*)*[(\[【「\"'“]?\s*"
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?!\d)")
_LETTER = re.compile(r"[A-Z](?![A-Za-z])")
_OUT_OF = re.compile(r"(?:/|(?i:out of)|满分)\s*\d+")
_STANDALONE_INT = re.compile(r"(?<![\d.])\d+(?!\.?\d)")
_STANDALONE_LETTER = re.compile(r"(?<![A-Za-z])[A-Z](?![A-Za-z])")


def _canonical(token: str, labels: tuple[str, ...], synonyms: Mapping[str, str]) -> str | None:
    """The label `token` stands for ("4.0" → "4", "b" → "B", "yes" → "1"), or None."""
    if token in labels:
        return token
    folded = token.casefold()
    if folded in synonyms:
        return synonyms[folded]
    if len(token) == 1 and token.upper() in labels:
        return token.upper()
    if _NUMBER.fullmatch(token):
        number = float(token)
        if number.is_integer() and str(int(number)) in labels:
            return str(int(number))
    return None


def extract_label(text: str, labels: tuple[str, ...] | None, synonyms: Mapping[str, str] | None = None
                  ) -> tuple[str | None, str]:
    """(label, status) for one generated answer; status is "ok", "unparsed" or "out_of_set" (see module doc)."""
    text = unicodedata.normalize("NFKC", str(text)).strip()
    if labels is None:
        return (text, OK) if text else (None, UNPARSED)
    synonyms = synonyms or {}
    core = text.strip(_STRIP)
    label = _canonical(core, labels, synonyms) if core else None
    if label is not None:
        return label, OK
    numeric = all(_is_int(value) for value in labels)
    letters = all(re.fullmatch(r"[A-Z]", value) for value in labels)
    if (numeric and _NUMBER.fullmatch(core)) or (letters and re.fullmatch(r"[A-Za-z]", core)):
        return None, OUT_OF_SET
    patterns = [_NUMBER if numeric else _LETTER] if numeric or letters else []
    if synonyms or not patterns:
        patterns.append(_word_pattern(labels, tuple(synonyms)))
    for cue in _CUE.finditer(text):
        for pattern in patterns:
            token = pattern.match(text, cue.end())
            if token and (label := _canonical(token.group(0), labels, synonyms)) is not None:
                return label, OK
    if numeric or letters:
        body = _OUT_OF.sub(" ", text) if numeric else text
        found = (_STANDALONE_INT if numeric else _STANDALONE_LETTER).findall(body)
        candidates = {label for token in found if (label := _canonical(token, labels, synonyms)) is not None}
        if len(candidates) == 1:
            return candidates.pop(), OK
    return None, UNPARSED


@functools.lru_cache(maxsize=64)
def _word_pattern(labels: tuple[str, ...], words: tuple[str, ...]) -> re.Pattern:
    """Any label or synonym, longest first; ASCII words must end at a word boundary."""
    words = sorted({*labels, *words}, key=len, reverse=True)
    return re.compile("|".join(re.escape(word) + (r"(?![A-Za-z0-9])" if word.isascii() else "") for word in words),
                      re.IGNORECASE)


@dataclass
class Extracted:
    """Labels for a column of answers: `labels[i]` is None where `status[i]` is not "ok"."""

    labels: np.ndarray  # object
    status: np.ndarray  # object: OK / UNPARSED / OUT_OF_SET / "unknown group"

    @property
    def unparsed(self) -> np.ndarray:
        return self.status == UNPARSED


def extract_labels(texts: Sequence[str], task: Task, groups: Sequence[str] | None = None) -> Extracted:
    """Extract every answer; each distinct (text, group) pair is parsed once, so a million short answers are fast."""
    texts = pd.Series(np.asarray(texts, dtype=object))
    text_codes, text_uniques = pd.factorize(texts)
    if task.group_rules and groups is not None:
        group_codes, group_uniques = pd.factorize(pd.Series(np.asarray(groups, dtype=object)).fillna(""))
        pair_codes, pairs = pd.factorize(text_codes.astype(np.int64) * (len(group_uniques) + 1) + group_codes)
        keys = [(text_uniques[p // (len(group_uniques) + 1)], group_uniques[p % (len(group_uniques) + 1)])
                for p in pairs]
    else:
        pair_codes, keys = text_codes, [(text, None) for text in text_uniques]
    results = []
    for text, group in keys:
        try:
            labels, synonyms = task.rules_for(group)
        except KeyError:
            results.append((None, "unknown group"))
            continue
        results.append(extract_label(text, labels, synonyms))
    labels = np.empty(len(results), dtype=object)
    labels[:] = [label for label, _ in results]
    status = np.array([status for _, status in results], dtype=object)
    return Extracted(labels[pair_codes], status[pair_codes])


def normalize_text(text: str) -> str:
    """Free-text comparison form: full width → half width, case folded, punctuation dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    text = "".join(" " if unicodedata.category(char)[0] in "PS" else char for char in text)
    return " ".join(text.split())


@dataclass
class Predictions:
    """One predictions (or gold) file after extraction; `frame` keeps the file's columns as read."""

    path: Path
    frame: pd.DataFrame
    labels: np.ndarray  # object, None where unparsed
    groups: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def ids(self) -> np.ndarray:
        return self.frame["id"].to_numpy(dtype=object)

    @property
    def unparsed_ids(self) -> list[str]:
        return [i for i, label in zip(self.ids, self.labels, strict=True) if label is None]

    @property
    def extra_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c not in ("id", "prediction") and not c.startswith("prob_")]

    @property
    def prob_labels(self) -> list[str]:
        return [c[len("prob_"):] for c in self.frame.columns if c.startswith("prob_")]

    def probabilities(self, label_order: Sequence[str]) -> np.ndarray:
        """(rows, labels) float matrix of the `prob_<label>` columns in `label_order`; absent or empty: NaN."""
        out = np.full((len(self.frame), len(label_order)), np.nan)
        for k, label in enumerate(label_order):
            column = f"prob_{label}"
            if column not in self.frame.columns:
                continue
            values = pd.to_numeric(self.frame[column].replace("", np.nan), errors="coerce")
            bad = values.isna() & (self.frame[column] != "")
            if bad.any():
                raise VotingError(f"{self.path} row {_row_of(bad)} id {self.frame['id'][bad].iloc[0]}: {column} is "
                                  f"{self.frame[column][bad].iloc[0]!r}, expected a number")
            out[:, k] = values.to_numpy(dtype=float)
        return out


def _row_of(mask: pd.Series) -> int:
    """The file line of the first True row (the header is line 1)."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 2


def read_csv_frame(path: str | Path, required: Sequence[str], unique_ids: bool = True) -> pd.DataFrame:
    """A CSV (UTF-8 or GB18030) as strings, checked: the required columns, at least one row, unique non-empty ids."""
    path = Path(path)
    try:
        text, _ = read_text(path)
    except FileNotFoundError:
        raise VotingError(f"{path}: no such file") from None
    except DecodeError as err:
        raise VotingError(str(err)) from None
    if not text.strip():
        raise VotingError(f"{path}: empty file, expected a header {','.join(required)} and rows")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise VotingError(f"{path}: not a readable CSV ({err})") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise VotingError(f"{path}: header is {','.join(frame.columns)}; expected the columns {','.join(required)}")
    if frame.empty:
        raise VotingError(f"{path}: header only, no rows")
    check_ids(path, frame["id"], unique_ids)
    return frame


def check_ids(path: str | Path, ids: pd.Series, unique: bool = True) -> None:
    """Raise VotingError naming the first rows with an empty or (when `unique`) a repeated id."""
    empty = ids == ""
    if empty.any():
        raise VotingError(f"{path} row {_row_of(empty)}: empty id")
    if not unique:
        return
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        raise VotingError(f"{path}: duplicate ids {first_items(pd.unique(ids[duplicated]))} "
                          f"(first at row {_row_of(duplicated)})")


def labels_or_error(path: Path, frame: pd.DataFrame, column: str, task: Task, groups: np.ndarray | None,
                    strict: bool = False) -> np.ndarray:
    """Extract `frame[column]`; out-of-set values (and, with strict, unparsed ones) raise VotingError."""
    extracted = extract_labels(frame[column].to_numpy(dtype=object), task, groups)
    for status in ("unknown group", OUT_OF_SET, UNPARSED):
        bad = extracted.status == status
        if not bad.any() or (status == UNPARSED and not strict):
            continue
        row = int(np.flatnonzero(bad)[0])
        where = f"{path} {_record_name(path, row)} id {frame['id'].iloc[row]}"
        group = None if groups is None else groups[row]
        if status == "unknown group":
            raise VotingError(f"{where}: {task.group_col} is {group!r}, expected one of {', '.join(task.group_rules)}")
        labels, _ = task.rules_for(group)
        expected = "a non-empty answer" if labels is None else f"a {task.name} label ({', '.join(labels)}" + (
            f" for {group})" if group else ")")
        raise VotingError(f"{where}: {column} is {frame[column].iloc[row]!r}, expected {expected}; "
                          f"{int(bad.sum())} such rows, ids {first_items(frame['id'][bad])}")
    return extracted.labels


def _record_name(path: Path, row: int) -> str:
    """`row N` (the CSV line, header = 1) or `record N` (0-based, JSON) for the row-th record."""
    return f"record {row}" if Path(path).suffix.lower() == ".json" else f"row {row + 2}"


def group_values(frame: pd.DataFrame, task: Task, groups: Mapping[str, str] | None) -> np.ndarray | None:
    """The task's group (judge: dimension) per row: the file's own column, else the `groups` id → group map."""
    if not task.group_col:
        return None
    if task.group_col in frame.columns:
        return frame[task.group_col].to_numpy(dtype=object)
    if groups:
        return frame["id"].map(groups).fillna("").to_numpy(dtype=object)
    return None


def read_predictions_csv(path: str | Path, task: Task, groups: Mapping[str, str] | None = None) -> Predictions:
    """A predictions file (`id,prediction[,prob_*][,extras]`) with the task's extraction applied to `prediction`."""
    path = Path(path)
    frame = read_csv_frame(path, ("id", "prediction"))
    row_groups = group_values(frame, task, groups)
    labels = labels_or_error(path, frame, "prediction", task, row_groups)
    return Predictions(path, frame, labels, row_groups)


def read_dataset_json(path: str | Path) -> list[dict]:
    """An adapter dataset: a JSON list of records, each with a unique non-empty `id`."""
    path = Path(path)
    try:
        text, _ = read_text(path)
        records = json.loads(text)
    except FileNotFoundError:
        raise VotingError(f"{path}: no such file") from None
    except (DecodeError, json.JSONDecodeError) as err:
        raise VotingError(f"{path}: not a JSON list of records ({err})") from None
    if not isinstance(records, list) or not records:
        raise VotingError(f"{path}: expected a non-empty JSON list of records with id, instruction, input, output")
    for index, record in enumerate(records):
        if not isinstance(record, dict) or str(record.get("id", "")).strip() == "":
            raise VotingError(f"{path} record {index}: expected an object with a non-empty id")
    check_ids(path, pd.Series([str(record["id"]) for record in records]))
    return records


def read_gold(path: str | Path, task: Task) -> Predictions:
    """Gold labels: CSV `id,label`, or an adapter dataset JSON (`id`, `output`); every label must parse."""
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
    labels = labels_or_error(path, frame, "label", task, row_groups, strict=True)
    return Predictions(path, frame.rename(columns={"label": "prediction"}), labels, row_groups)


def _looks_like_json(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"["
    except OSError:
        return False


def report_unparsed(predictions: Predictions) -> int:
    """Print how many answers of a file could not be parsed (stderr) and return the count."""
    ids = predictions.unparsed_ids
    if ids:
        print(f"{predictions.path}: {len(ids)} of {len(predictions.labels)} predictions unparsed "
              f"(ids {first_items(ids)})", file=sys.stderr)
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
        out.append(Predictions(other.path, other.frame.iloc[order].reset_index(drop=True), other.labels[order],
                               None if other.groups is None else other.groups[order]))
    return out
