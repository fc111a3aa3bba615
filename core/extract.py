"""From model text to labels: the extraction rule every stage shares (votes, self-consistency, label scoring's checks).

`extract_label("答案是B。", LETTERS)` → ("B", "ok"). The rule, in order (first that applies wins):
1. the whole answer (NFKC-normalised, surrounding punctuation stripped) is a label, or a synonym ("yes" → "1");
2. the whole answer is a bare value of the label's kind outside the set ("7" for 1–5, "F" for A–E) → out_of_set;
3. a cue word followed by a label: "Score: 4", "答案是B", "评分为4分", "answer is (C)";
4. the answer opens with a synonym as a whole word ("No, the two questions…" → 0, "正确，因为…" → 1);
5. exactly one distinct label appears as a standalone token ("我给4分" → 4; "4 or 5" is ambiguous);
otherwise the answer is unparsed. Free-text tasks (qa, keywords) keep the stripped text; empty text is an empty
answer ("", status "empty"): an answer that scores 0, counted apart, never an abstention (gold refuses it).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from core.tasks import TaskSpec

OK, UNPARSED, OUT_OF_SET, UNKNOWN_GROUP, EMPTY = "ok", "unparsed", "out_of_set", "unknown group", "empty"


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


def extract_label(
    text: str, labels: tuple[str, ...] | None, synonyms: Mapping[str, str] | None = None
) -> tuple[str | None, str]:
    """(label, status) for one generated answer; status is "ok", "unparsed" or "out_of_set" (see module doc); a
    free-text task's empty answer is ("", "empty")."""
    text = unicodedata.normalize("NFKC", str(text)).strip()
    if labels is None:
        return (text, OK) if text else ("", EMPTY)
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
    if synonyms and (label := _leading_word(text, synonyms)) is not None:
        return label, OK
    if numeric or letters:
        body = _OUT_OF.sub(" ", text) if numeric else text
        found = (_STANDALONE_INT if numeric else _STANDALONE_LETTER).findall(body)
        candidates = {label for token in found if (label := _canonical(token, labels, synonyms)) is not None}
        if len(candidates) == 1:
            return candidates.pop(), OK
    return None, UNPARSED


def _leading_word(text: str, synonyms: Mapping[str, str]) -> str | None:
    """The label of a synonym the answer opens with, as a whole word ("No, the two questions…" → "0").

    Single ASCII letters ("y", "n") are left out: "N/A" is not a no.
    """
    folded = text.casefold()
    for word in sorted(synonyms, key=len, reverse=True):
        if (len(word) > 1 or not word.isascii()) and folded.startswith(word):
            rest = folded[len(word) :]
            if not rest or not rest[0].isalnum():
                return synonyms[word]
    return None


@functools.lru_cache(maxsize=64)
def _word_pattern(labels: tuple[str, ...], words: tuple[str, ...]) -> re.Pattern:
    """Any label or synonym, longest first; ASCII words must end at a word boundary."""
    longest_first = sorted({*labels, *words}, key=len, reverse=True)
    return re.compile(
        "|".join(re.escape(word) + (r"(?![A-Za-z0-9])" if word.isascii() else "") for word in longest_first),
        re.IGNORECASE,
    )


@dataclass
class Extracted:
    """Labels for a column of answers: `labels[i]` is None where `status[i]` is not "ok"."""

    labels: np.ndarray  # object
    status: np.ndarray  # object: OK / UNPARSED / OUT_OF_SET / UNKNOWN_GROUP / EMPTY (free text: label "")

    @property
    def unparsed(self) -> np.ndarray:
        return self.status == UNPARSED


def extract_labels(
    texts: Sequence[str] | np.ndarray, task: TaskSpec, groups: Sequence[str] | np.ndarray | None = None
) -> Extracted:
    """Extract every answer; each distinct (text, group) pair is parsed once, so a million short answers are fast."""
    texts = pd.Series(np.asarray(texts, dtype=object))
    text_codes, text_uniques = pd.factorize(texts)
    if task.groups and groups is not None:
        group_codes, group_uniques = pd.factorize(pd.Series(np.asarray(groups, dtype=object)).fillna(""))
        pair_codes, pairs = pd.factorize(text_codes.astype(np.int64) * (len(group_uniques) + 1) + group_codes)
        keys = [
            (text_uniques[p // (len(group_uniques) + 1)], group_uniques[p % (len(group_uniques) + 1)]) for p in pairs
        ]
    else:
        pair_codes, keys = text_codes, [(text, None) for text in text_uniques]
    results: list[tuple[str | None, str]] = []
    for text, group in keys:
        try:
            labels, synonyms = task.rules_for(group)
        except KeyError:
            results.append((None, UNKNOWN_GROUP))
            continue
        results.append(extract_label(text, labels, synonyms))
    found = np.empty(len(results), dtype=object)
    found[:] = [label for label, _ in results]
    status = np.array([status for _, status in results], dtype=object)
    return Extracted(found[pair_codes], status[pair_codes])


def normalize_text(text: str) -> str:
    """Free-text comparison form: full width → half width, case folded, punctuation dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    text = "".join(" " if unicodedata.category(char)[0] in "PS" else char for char in text)
    return " ".join(text.split())
