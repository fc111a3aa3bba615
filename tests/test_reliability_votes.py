"""Issue #21, voting: an output never replaces an input, weights are finite, soft votes read real probabilities.

Each case exits 2 with one message naming the file (and row, column or model) and leaves the inputs untouched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from voting.cli import main


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def run(argv, capsys) -> tuple[int, dict | None, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


@pytest.fixture
def three(tmp_path) -> list[Path]:
    """Three binary models with prob_ columns consistent with their predictions."""
    rows = {
        "a": [("1", "0.1", "0.9"), ("0", "0.8", "0.2"), ("1", "0.4", "0.6")],
        "b": [("1", "0.3", "0.7"), ("1", "0.45", "0.55"), ("0", "0.9", "0.1")],
        "c": [("0", "0.6", "0.4"), ("0", "0.7", "0.3"), ("0", "0.55", "0.45")],
    }
    return [
        write(
            tmp_path / f"{name}.csv",
            "id,prediction,prob_0,prob_1\n" + "".join(f"r{i},{p},{p0},{p1}\n" for i, (p, p0, p1) in enumerate(values)),
        )
        for name, values in rows.items()
    ]


VOTE = ["vote", "--labels", "0,1", "--tie-breaker", "a"]

# ---------------------------------------------------------------- an output that is an input


def _spellings(path: Path, tmp_path: Path) -> dict[str, str]:
    link = tmp_path / "link.csv"
    link.symlink_to(path)
    return {
        "same": str(path),
        "relative": os.path.relpath(path),
        "dot-slash": "./" + os.path.relpath(path),
        "dot-dot": str(path.parent / ".." / path.parent.name / path.name),
        "symlink": str(link),
    }


@pytest.mark.parametrize("spelling", ["same", "relative", "dot-slash", "dot-dot", "symlink"])
def test_vote_refuses_an_output_that_is_one_of_its_inputs(three, tmp_path, capsys, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    before = three[0].read_bytes()
    out = _spellings(three[0], tmp_path)[spelling]
    code, _, err = run([*VOTE, *three, "--out", out], capsys)
    assert code == 2
    assert "is the input file" in err and "a.csv" in err, err
    assert three[0].read_bytes() == before


def test_vote_refuses_a_hard_link_to_an_input(three, tmp_path, capsys):
    os.link(three[1], tmp_path / "hard.csv")
    code, _, err = run([*VOTE, *three, "--out", tmp_path / "hard.csv"], capsys)
    assert code == 2 and "is the input file" in err, err


def test_vote_refuses_the_gold_or_groups_file_as_output(three, tmp_path, capsys):
    gold = write(tmp_path / "gold.csv", "id,label\nr0,1\nr1,0\nr2,0\n")
    code, _, err = run([*VOTE, *three, "--gold", gold, "--out", gold], capsys)
    assert code == 2 and "gold.csv" in err and "is the input file" in err, err
    assert gold.read_text() == "id,label\nr0,1\nr1,0\nr2,0\n"


@pytest.mark.parametrize("empty", ["", " "])
def test_empty_out_is_refused_as_empty(three, tmp_path, capsys, monkeypatch, empty):
    monkeypatch.chdir(tmp_path)  # today's code writes a file named " " in the current folder
    code, _, err = run([*VOTE, *three, "--out", empty], capsys)
    assert code == 2
    assert "--out is empty, expected a path" in err, err
    assert "Device or resource busy" not in err


def test_self_consistency_refuses_its_samples_file_as_output(tmp_path, capsys):
    samples = write(tmp_path / "s.csv", "id,prediction,sample\nr0,1,0\nr0,1,1\nr1,0,0\n")
    code, _, err = run(["self-consistency", samples, "--labels", "0,1", "--out", tmp_path / "." / "s.csv"], capsys)
    assert code == 2 and "is the input file" in err, err
    assert samples.read_text() == "id,prediction,sample\nr0,1,0\nr0,1,1\nr1,0,0\n"
    code, _, err = run(["self-consistency", samples, "--labels", "0,1", "--out", ""], capsys)
    assert code == 2 and "--out is empty" in err, err


def test_report_refuses_a_folder_where_it_would_overwrite_an_input(three, tmp_path, capsys):
    gold = write(tmp_path / "rows.csv", "id,label\nr0,1\nr1,0\nr2,0\n")  # report --out DIR writes DIR/rows.csv (qa)
    code, _, err = run(["report", *three, "--gold", gold, "--labels", "0,1", "--out", tmp_path], capsys)
    assert code == 2 and "is the input file" in err and "rows.csv" in err, err
    code, _, err = run(["report", *three, "--gold", gold, "--labels", "0,1", "--out", ""], capsys)
    assert code == 2 and "--out is empty" in err, err
    assert not (tmp_path / "report.json").exists()


def test_submit_refuses_its_prediction_or_test_file_as_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    test = write(tmp_path / "cola_test.json", json.dumps([{"id": "1", "instruction": "i", "input": "x", "output": ""}]))
    pred = write(tmp_path / "voted.csv", "id,prediction\n1,1\n")
    code, _, err = run(["submit", "cola", "--pred", pred, "--test", test, "--out", pred], capsys)
    assert code == 2 and "is the input file" in err, err
    assert pred.read_text() == "id,prediction\n1,1\n"
    code, _, err = run(["submit", "cola", "--pred", pred, "--test", test, "--out", ""], capsys)
    assert code == 2 and "--out is empty" in err, err
    assert not (tmp_path / "result_CoLA.txt").exists()  # '' would have named the current folder


def test_score_refuses_a_plot_over_its_predictions(three, tmp_path, capsys):
    gold = write(tmp_path / "gold.csv", "id,label\nr0,1\nr1,0\nr2,0\n")
    before = three[0].read_bytes()
    code, _, err = run(["score", "--pred", three[0], "--gold", gold, "--labels", "0,1", "--plot", three[0]], capsys)
    assert code == 2 and "--plot" in err and "is the input file" in err, err
    assert three[0].read_bytes() == before


def test_a_distinct_output_is_still_written(three, tmp_path, capsys):
    out = tmp_path / "voted" / "a.csv"  # same stem, another folder: fine
    code, summary, err = run([*VOTE, *three, "--out", out], capsys)
    assert code == 0, err
    assert summary["n"] == 3 and out.is_file()


# ---------------------------------------------------------------- weights


@pytest.mark.parametrize("weight", ["inf", "-inf", "nan", "1e400", "-1", "0"])
def test_weights_that_are_not_finite_and_positive_are_refused_naming_the_model(three, tmp_path, capsys, weight):
    code, _, err = run([*VOTE, *three, "--weights", f"b={weight}", "--out", tmp_path / "v.csv"], capsys)
    assert code == 2, err
    assert "the weight of b" in err and "expected a finite number above 0" in err, err
    assert not (tmp_path / "v.csv").exists()


def test_tiny_weights_vote_like_their_ratio(three, tmp_path, capsys):
    """3:1:1 weights decide the same rows whatever their scale (ties are judged after scaling the top to 1)."""
    outs = []
    for scale in ("1", "1e-10"):
        out = tmp_path / f"v{scale}.csv"
        weights = f"a={3 * float(scale)},b={scale},c={scale}"
        code, summary, err = run([*VOTE, *three, "--weights", weights, "--out", out], capsys)
        assert code == 0, err
        outs.append((out.read_text(), summary["decided_by"]))
    assert outs[0] == outs[1]
    assert outs[0][1]["tie_breaker"] == 0


# ---------------------------------------------------------------- soft votes


SOFT = [*VOTE, "--soft", "--max-unparsed", "50%"]


def _soft(tmp_path: Path, three: list[Path], capsys, b_rows: list[str]) -> tuple[int, str]:
    write(three[1], "id,prediction,prob_0,prob_1\n" + "".join(f"{row}\n" for row in b_rows))
    code, _, err = run([*SOFT, *three, "--out", tmp_path / "v.csv"], capsys)
    return code, err


SOFT_BROKEN = {
    "percent": (["r0,1,10,90", "r1,1,45,55", "r2,0,90,10"], "b.csv row 2 id r0: prob_0 is '10', expected a "),
    "negative": (["r0,1,0.3,0.7", "r1,1,-0.2,1.2", "r2,0,0.9,0.1"], "b.csv row 3 id r1: prob_0 is '-0.2'"),
    "inf": (["r0,1,0.3,0.7", "r1,1,0.45,0.55", "r2,0,inf,0.1"], "b.csv row 4 id r2: prob_0 is 'inf'"),
    "huge": (["r0,1,0.3,1e308", "r1,1,0.45,0.55", "r2,0,0.9,0.1"], "b.csv row 2 id r0: prob_1 is '1e308'"),
    "sum": (["r0,1,0.3,0.7", "r1,1,0.45,0.55", "r2,0,0.5,0.1"], "b.csv row 4 id r2: prob_0+prob_1 sum to 0.6"),
    "argmax": (
        ["r0,1,0.3,0.7", "r1,0,0.45,0.55", "r2,0,0.9,0.1"],
        "b.csv row 3 id r1: prediction is '0' (label 0, prob 0.45) but its most probable label is 1",
    ),
}


@pytest.mark.parametrize("case", sorted(SOFT_BROKEN))
def test_soft_refuses_probabilities_that_are_not_a_distribution(three, tmp_path, capsys, case):
    rows, message = SOFT_BROKEN[case]
    code, err = _soft(tmp_path, three, capsys, rows)
    assert code == 2, err
    assert message in err, err
    assert not (tmp_path / "v.csv").exists()


def test_soft_names_the_file_row_of_a_file_in_another_order(three, tmp_path, capsys):
    code, err = _soft(tmp_path, three, capsys, ["r2,0,0.9,0.1", "r0,1,0.3,0.7", "r1,0,0.45,0.55"])
    assert code == 2
    assert "b.csv row 4 id r1: prediction is '0'" in err, err


def test_soft_accepts_rounded_rows_ties_unparsed_and_abstaining_rows(three, tmp_path, capsys):
    rows = ["r0,1,0.333,0.667", "r1,oops,0.2,0.8", "r2,0,0.5,0.5"]  # unparsed text: its probabilities still vote
    code, err = _soft(tmp_path, three, capsys, rows)
    assert code == 0, err
    write(three[1], "id,prediction,prob_0,prob_1\nr0,1,0.3,0.7\nr1,1,,\nr2,0,0,0\n")  # empty / zero: abstains
    code, _, err = run([*SOFT, *three, "--out", tmp_path / "v.csv"], capsys)
    assert code == 0, err
