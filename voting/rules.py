"""Voting rules on label codes: N-way (weighted) plurality with a tie-breaker, soft voting, self-consistency.

Labels are integer codes 0..K-1 (-1: the model abstained because its text was unparsed); the CLI maps them.
`plurality_vote` is the one core every command (and bench/vote.py) uses; `four_way_vote` is the seed's rule
on plain labels, built on it. Tie policy: see the package docstring (voting/__init__.py).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ABSTAIN = -1
# Why each row got its label (the `decided_by` column of a voted file).
MAJORITY, TIE_BREAKER, TIE_BREAKER_ONLY, FALLBACK, UNPARSED, NO_VOTE = range(6)
DECIDED_BY = ("majority", "tie_breaker", "tie_breaker_only", "fallback", "unparsed", "no_vote")
_EPS = 1e-9  # weighted counts are floats: counts within _EPS of the top are tied


@dataclass
class VoteResult:
    """`winner[i]` is a label code (-1 only where decided_by is NO_VOTE); `decided_by[i]` indexes DECIDED_BY."""

    winner: np.ndarray
    decided_by: np.ndarray

    def decided_by_counts(self) -> dict[str, int]:
        counts = np.bincount(self.decided_by, minlength=len(DECIDED_BY))
        return {name: int(count) for name, count in zip(DECIDED_BY, counts, strict=True)}


def vote_counts(codes: np.ndarray, n_labels: int, weights: Sequence[float] | None = None) -> np.ndarray:
    """(rows, labels) weighted vote totals of a (rows, models) code matrix; abstentions (-1) count nothing."""
    codes = np.asarray(codes)
    weight = np.ones(codes.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    counts = np.zeros((codes.shape[0], n_labels), dtype=float, order="F")
    for label in range(n_labels):
        counts[:, label] = (codes == label) @ weight
    return counts


def decide(
    scores: np.ndarray,
    tie_breaker: np.ndarray,
    tie_breaker_only: np.ndarray | None = None,
    unparsed_label: int | None = None,
) -> VoteResult:
    """Winners from (rows, labels) totals: the strict top wins; a tie (or a tie-breaker-only row) → `tie_breaker`.

    `tie_breaker` holds the tie-breaker model's code per row (-1 where it abstained: then the others' plurality
    decides, and a tie among them goes to the first tied label, FALLBACK). Rows with no vote at all get
    `unparsed_label` (UNPARSED) or -1 (NO_VOTE).
    """
    n, n_labels = scores.shape
    columns = [np.ascontiguousarray(scores[:, k]) for k in range(n_labels)]  # few labels: loop over them, not rows
    top = np.full(n, -np.inf)
    for column in columns:
        np.maximum(top, column, out=top)
    threshold = top - _EPS
    n_top = np.zeros(n, dtype=np.int64)
    winner = np.zeros(n, dtype=np.int64)
    for k in range(n_labels - 1, -1, -1):  # downwards, so the first top label is the one left in `winner`
        is_top = columns[k] >= threshold
        n_top += is_top
        winner[is_top] = k
    decided_by = np.full(n, MAJORITY, dtype=np.int64)
    tie_breaker = np.asarray(tie_breaker)
    has_tb = tie_breaker >= 0
    needs_tb = n_top > 1
    if tie_breaker_only is not None:
        needs_tb = needs_tb | np.asarray(tie_breaker_only, dtype=bool)
    by_tb = needs_tb & has_tb
    winner[by_tb] = tie_breaker[by_tb]
    decided_by[by_tb] = TIE_BREAKER
    if tie_breaker_only is not None:
        decided_by[by_tb & np.asarray(tie_breaker_only, dtype=bool)] = TIE_BREAKER_ONLY
    decided_by[needs_tb & ~has_tb & (n_top > 1)] = FALLBACK
    no_vote = top <= 0
    winner[no_vote] = -1 if unparsed_label is None else unparsed_label
    decided_by[no_vote] = NO_VOTE if unparsed_label is None else UNPARSED
    return VoteResult(winner, decided_by)


def plurality_vote(
    codes: np.ndarray,
    n_labels: int,
    tie_breaker: int,
    weights: Sequence[float] | None = None,
    tie_breaker_only: np.ndarray | None = None,
    unparsed_label: int | None = None,
) -> VoteResult:
    """N-way (weighted) plurality over a (rows, models) code matrix; column `tie_breaker` breaks ties."""
    codes = np.asarray(codes)
    if not 0 <= tie_breaker < codes.shape[1]:
        raise IndexError(f"tie_breaker column {tie_breaker} outside 0..{codes.shape[1] - 1}")
    scores = vote_counts(codes, n_labels, weights)
    return decide(scores, codes[:, tie_breaker], tie_breaker_only, unparsed_label)


def soft_vote(
    probs: np.ndarray,
    tie_breaker_codes: np.ndarray,
    weights: Sequence[float] | None = None,
    tie_breaker_only: np.ndarray | None = None,
    unparsed_label: int | None = None,
) -> VoteResult:
    """Argmax of the (weighted) average of (models, rows, labels) probabilities; NaN counts as 0.

    A model whose probabilities on a row are all missing or zero abstains there; exact ties → tie-breaker's label.
    """
    probs = np.nan_to_num(np.asarray(probs, dtype=float), nan=0.0)
    weight = np.ones(probs.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    voting = probs.sum(axis=2) > 0  # (models, rows)
    totals = np.einsum("m,mrk->rk", weight, probs)
    mass = (weight[:, None] * voting).sum(axis=0)
    scores = np.divide(totals, mass[:, None], out=np.zeros_like(totals), where=mass[:, None] > 0)
    return decide(scores, tie_breaker_codes, tie_breaker_only, unparsed_label)


def four_way_vote(votes: Sequence[Sequence[Hashable]], tie_breaker: int = 0) -> list[Hashable]:
    """The seed's four-way rule on plain labels: `votes[m][i]` is model m's label for row i.

    3 or 4 equal votes win; exactly one pair (2-1-1) wins; 2-2 and 1-1-1-1 take model `tie_breaker`'s label.
    """
    if len(votes) != 4:
        raise ValueError(f"four_way_vote takes four models' labels, got {len(votes)}")
    codes, labels = encode_labels(votes)
    result = plurality_vote(codes, len(labels), tie_breaker)
    return [labels[code] for code in result.winner]


def encode_labels(
    votes: Sequence[Sequence[Hashable | None] | np.ndarray], label_order: Sequence[Hashable] | None = None
) -> tuple[np.ndarray, list[Hashable]]:
    """(rows, models) code matrix and the label list; None labels become ABSTAIN."""
    columns = [np.asarray(column, dtype=object) for column in votes]
    if label_order is None:
        present = pd.unique(np.concatenate(columns)) if columns else []
        label_order = sorted((x for x in present if x is not None), key=str)
    index = {label: code for code, label in enumerate(label_order)}
    codes = np.empty((len(columns[0]) if columns else 0, len(columns)), dtype=np.int64)
    for m, column in enumerate(columns):
        codes[:, m] = pd.Series(column).map(index).fillna(ABSTAIN).to_numpy(dtype=np.int64)
    return codes, list(label_order)


def self_consistency_vote(
    ids: Sequence[Hashable] | np.ndarray, answers: Sequence[Hashable | None] | np.ndarray
) -> pd.DataFrame:
    """Most frequent answer per id, samples given in order; a tie goes to the tied answer that came first.

    Unparsed samples (None) abstain. Returns a frame indexed by id (first-appearance order) with `prediction`
    (None where no sample parsed), `votes` (the winner's count), `samples` (parsed samples) and `tied` (whether
    another answer had as many votes, so sample order decided).
    """
    frame = pd.DataFrame({"id": np.asarray(ids, dtype=object), "answer": np.asarray(answers, dtype=object)})
    frame["order"] = np.arange(len(frame))
    id_order = pd.unique(frame["id"])
    parsed = frame[frame["answer"].notna()]
    tally = parsed.groupby(["id", "answer"], sort=False).agg(votes=("order", "size"), first=("order", "min"))
    tally = tally.reset_index().sort_values(["votes", "first"], ascending=[False, True], kind="stable")
    tally["top"] = tally["votes"] == tally.groupby("id", sort=False)["votes"].transform("max")
    n_top = tally.groupby("id", sort=False)["top"].sum()
    best = tally.drop_duplicates("id").set_index("id")
    out = pd.DataFrame(index=pd.Index(id_order, name="id"))
    out["prediction"] = best["answer"].reindex(out.index).astype(object)
    out["prediction"] = out["prediction"].where(out["prediction"].notna(), None)
    out["votes"] = best["votes"].reindex(out.index).fillna(0).astype(int)
    out["samples"] = parsed.groupby("id", sort=False).size().reindex(out.index).fillna(0).astype(int)
    out["tied"] = n_top.reindex(out.index).fillna(0).astype(int) > 1
    return out


def ensemble_vote(
    label_columns: Sequence[Sequence[Hashable | None] | np.ndarray],
    label_order: Sequence[Hashable],
    tie_breaker: int,
    weights: Sequence[float] | None = None,
    probs: np.ndarray | None = None,
    tie_breaker_only: np.ndarray | None = None,
    unparsed_label: Hashable | None = None,
) -> tuple[np.ndarray, VoteResult]:
    """Voted labels (object array, None where no model voted) from models' label columns (None: unparsed).

    Hard plurality by default; with `probs` (models, rows, labels in `label_order`) the soft vote.
    """
    codes, _ = encode_labels(label_columns, label_order)
    fallback = None if unparsed_label is None else list(label_order).index(unparsed_label)
    if probs is None:
        result = plurality_vote(codes, len(label_order), tie_breaker, weights, tie_breaker_only, fallback)
    else:
        result = soft_vote(probs, codes[:, tie_breaker], weights, tie_breaker_only, fallback)
    table = np.empty(len(label_order) + 1, dtype=object)
    table[:-1] = list(label_order)
    table[-1] = None  # code -1
    return table[result.winner], result
