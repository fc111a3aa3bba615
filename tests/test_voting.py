"""Voting rules: every branch of the seed's four-way rule, its properties (hypothesis), N-way, weights, soft
voting, abstentions and self-consistency."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voting.rules import (
    FALLBACK,
    MAJORITY,
    NO_VOTE,
    TIE_BREAKER,
    TIE_BREAKER_ONLY,
    UNPARSED,
    ensemble_vote,
    four_way_vote,
    plurality_vote,
    self_consistency_vote,
    soft_vote,
)


def one_row(votes, tie_breaker=0):
    """four_way_vote on a single row given as the four models' labels."""
    return four_way_vote([[vote] for vote in votes], tie_breaker)[0]


def seed_rule(votes, tie_breaker):
    """The seed's rule, written as the seed wrote it: a row at a time with a Counter."""
    ranked = Counter(votes).most_common()
    if ranked[0][1] >= 3 or (ranked[0][1] == 2 and len(ranked) == 3):
        return ranked[0][0]
    return votes[tie_breaker]


# ---- every branch of the four-way rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("votes", "tie_breaker", "expected", "branch"),
    [
        ((4, 4, 4, 4), 0, 4, "4 votes: unanimity"),
        ((3, 3, 3, 5), 0, 3, "3 votes, tie-breaker in the majority"),
        ((5, 3, 3, 3), 0, 3, "3 votes, tie-breaker is the odd one out"),
        ((2, 2, 1, 5), 0, 2, "2-1-1: the pair wins, tie-breaker in the pair"),
        ((1, 5, 2, 2), 0, 2, "2-1-1: the pair wins over the tie-breaker's single"),
        ((2, 2, 5, 5), 0, 2, "2-2: tie-breaker's pair"),
        ((2, 2, 5, 5), 2, 5, "2-2: the other pair when the tie-breaker is in it"),
        ((1, 2, 3, 4), 0, 1, "1-1-1-1: tie-breaker"),
        ((1, 2, 3, 4), 3, 4, "1-1-1-1: tie-breaker in the last column"),
    ],
)
def test_four_way_branches(votes, tie_breaker, expected, branch):
    assert one_row(votes, tie_breaker) == expected, branch


def test_four_way_decided_by_each_branch():
    codes = np.array([[1, 1, 1, 1], [1, 1, 1, 2], [1, 1, 2, 3], [1, 1, 2, 2], [0, 1, 2, 3]])
    result = plurality_vote(codes, 4, tie_breaker=2)
    assert result.winner.tolist() == [1, 1, 1, 2, 2]
    assert result.decided_by.tolist() == [MAJORITY, MAJORITY, MAJORITY, TIE_BREAKER, TIE_BREAKER]


def test_four_way_needs_four_models():
    with pytest.raises(ValueError, match="four models"):
        four_way_vote([[1], [1], [1]])


# ---- properties ------------------------------------------------------------------------------------------------

LABEL = st.integers(min_value=1, max_value=5)
ROW = st.lists(LABEL, min_size=4, max_size=4)
TB = st.integers(min_value=0, max_value=3)


@settings(max_examples=200, deadline=None)
@given(label=LABEL, tie_breaker=TB)
def test_unanimity_wins(label, tie_breaker):
    assert one_row([label] * 4, tie_breaker) == label


@settings(max_examples=200, deadline=None)
@given(label=LABEL, other=LABEL, position=TB, tie_breaker=TB)
def test_three_of_four_always_wins(label, other, position, tie_breaker):
    votes = [label] * 4
    votes[position] = other
    assert one_row(votes, tie_breaker) == label


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=20), tie_breaker=TB, data=st.data())
def test_permuting_the_other_models_changes_nothing(rows, tie_breaker, data):
    columns = [list(column) for column in zip(*rows, strict=True)]
    others = [m for m in range(4) if m != tie_breaker]
    shuffled = data.draw(st.permutations(others))
    order = list(shuffled)
    order.insert(tie_breaker, tie_breaker)  # the tie-breaker keeps its column
    permuted = [columns[m] for m in order]
    assert four_way_vote(permuted, tie_breaker) == four_way_vote(columns, tie_breaker)


@settings(max_examples=300, deadline=None)
@given(votes=ROW, tie_breaker=TB)
def test_a_tie_always_goes_to_the_tie_breaker(votes, tie_breaker):
    counts = Counter(votes).most_common()
    tied = len(counts) > 1 and counts[0][1] == counts[1][1]
    winner = one_row(votes, tie_breaker)
    if tied:
        assert winner == votes[tie_breaker]
    else:
        assert winner == counts[0][0]


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=30), tie_breaker=TB)
def test_equals_the_seed_counter_rule(rows, tie_breaker):
    columns = [list(column) for column in zip(*rows, strict=True)]
    assert four_way_vote(columns, tie_breaker) == [seed_rule(row, tie_breaker) for row in rows]


# ---- N-way, weights, soft, abstentions --------------------------------------------------------------------------


def test_five_way_tie_goes_to_tie_breaker_even_outside_the_tied_labels():
    # A A B B C with C the tie-breaker: A and B tie at 2, C (1 vote) still wins (the seed's rule).
    codes = np.array([[0, 0, 1, 1, 2]])
    result = plurality_vote(codes, 3, tie_breaker=4)
    assert result.winner.tolist() == [2]
    assert result.decided_by.tolist() == [TIE_BREAKER]


def test_weights_break_and_make_ties():
    codes = np.array([[0, 1, 1, 2]])
    assert plurality_vote(codes, 3, tie_breaker=3, weights=[3, 1, 1, 1]).winner.tolist() == [0]
    tie = plurality_vote(codes, 3, tie_breaker=3, weights=[2, 1, 1, 1])  # 2 vs 2: tie → tie-breaker
    assert tie.winner.tolist() == [2] and tie.decided_by.tolist() == [TIE_BREAKER]
    floats = plurality_vote(codes, 3, tie_breaker=3, weights=[0.3, 0.1, 0.2, 0.05])  # 0.3 vs 0.1+0.2: tied
    assert floats.decided_by.tolist() == [TIE_BREAKER]


def test_tie_breaker_only_rows_take_the_tie_breakers_label():
    codes = np.array([[1, 0, 0, 0], [1, 0, 0, 0]])
    result = plurality_vote(codes, 2, tie_breaker=0, tie_breaker_only=np.array([True, False]))
    assert result.winner.tolist() == [1, 0]
    assert result.decided_by.tolist() == [TIE_BREAKER_ONLY, MAJORITY]


def test_abstentions():
    codes = np.array(
        [
            [-1, 2, 2, 3],  # tie-breaker abstains, not needed: 2 wins
            [-1, 2, 3, 4],  # tie-breaker abstains on a tie: first tied label in label order
            [-1, 3, 2, -1],  # same, order of models does not matter
            [-1, -1, -1, -1],  # nobody parsed
            [1, -1, -1, -1],  # only the tie-breaker parsed
        ]
    )
    result = plurality_vote(codes, 5, tie_breaker=0)
    assert result.winner.tolist() == [2, 2, 2, -1, 1]
    assert result.decided_by.tolist() == [MAJORITY, FALLBACK, FALLBACK, NO_VOTE, MAJORITY]
    filled = plurality_vote(codes, 5, tie_breaker=0, unparsed_label=4)
    assert filled.winner[3] == 4 and filled.decided_by[3] == UNPARSED


def test_tie_breaker_only_row_where_the_tie_breaker_abstains_uses_the_others():
    codes = np.array([[-1, 1, 1, 0]])
    result = plurality_vote(codes, 2, tie_breaker=0, tie_breaker_only=np.array([True]))
    assert result.winner.tolist() == [1] and result.decided_by.tolist() == [MAJORITY]


def test_soft_vote_averages_probabilities():
    probs = np.array(
        [
            [[0.6, 0.4], [0.5, 0.5]],
            [[0.0, 1.0], [0.5, 0.5]],
            [[0.55, 0.45], [np.nan, np.nan]],  # third model abstains on row 1
        ]
    )
    tb_codes = np.array([0, 1])
    result = soft_vote(probs, tb_codes)
    assert result.winner.tolist() == [1, 1]  # row 0: 1.15 vs 1.85; row 1: exact tie → tie-breaker's 1
    assert result.decided_by.tolist() == [MAJORITY, TIE_BREAKER]
    weighted = soft_vote(probs, tb_codes, weights=[6, 1, 1])
    assert weighted.winner.tolist() == [0, 1]


def test_ensemble_vote_on_labels():
    labels, result = ensemble_vote([["4", None], ["4", "2"], ["3", "2"], ["3", "1"]], ["1", "2", "3", "4", "5"], 0)
    assert labels.tolist() == ["4", "2"]
    assert result.decided_by.tolist() == [TIE_BREAKER, MAJORITY]


# ---- self-consistency -------------------------------------------------------------------------------------------


def test_self_consistency_most_frequent_and_first_on_ties():
    ids = ["q1"] * 5 + ["q2"] * 4 + ["q3"] * 2
    answers = ["A", "B", "B", "C", "B", "C", "A", "A", "C", None, None]
    voted = self_consistency_vote(ids, answers)
    assert voted.index.tolist() == ["q1", "q2", "q3"]
    assert voted["prediction"].tolist() == ["B", "C", None]  # q2: A and C tie at 2, C came first
    assert voted["votes"].tolist() == [3, 2, 0]
    assert voted["samples"].tolist() == [5, 4, 0]
    assert voted["tied"].tolist() == [False, True, False]


@settings(max_examples=100, deadline=None)
@given(answers=st.lists(st.sampled_from("ABCDE"), min_size=1, max_size=9))
def test_self_consistency_matches_a_counter(answers):
    counts = Counter(answers)
    top = max(counts.values())
    expected = next(answer for answer in answers if counts[answer] == top)
    assert self_consistency_vote(["q"] * len(answers), answers)["prediction"].tolist() == [expected]


def test_bench_agrees_with_the_counter_loop():
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, str(root / "bench" / "vote.py"), "--rows", "20000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["identical"] is True and figures["rows"] == 20000
