"""#22.2: each split and each trial has its own predictions file, every file records what it was made from, and
vote, report and submit refuse a file made from another split, dataset or trial, naming it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from adapters.cli import main as adapters_main
from core.origin import read_origin
from core.paths import predictions_csv
from pipeline.baseline import main as baseline_main
from voting.cli import main as voting_main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """The judge sample as `jd` (train, dev = the train file again, test) in tmp/data; the cwd is tmp."""
    monkeypatch.chdir(tmp_path)
    files = ["--train", str(SAMPLES / "judge_train.csv"), "--dev", str(SAMPLES / "judge_train.csv")]
    argv = ["judge", *files, "--test", str(SAMPLES / "judge_test.csv"), "--task", "jd", "--tokenizer", "none"]
    assert adapters_main(argv) == 0
    return tmp_path


def ids(path: Path) -> list[str]:
    return [row["id"] for row in csv.DictReader(path.open(encoding="utf-8"))]


def test_splits_and_trials_never_replace_the_test_predictions(work, capsys):
    assert predictions_csv("jd", "m") == Path("predictions/jd/m.csv")  # the test split's stays where it was
    assert predictions_csv("jd", "m", "score", "dev") == Path("predictions/jd/dev/m_score.csv")
    assert predictions_csv("jd", "m", split="test", limit=3) == Path("predictions/jd/test-limit3/m.csv")
    assert baseline_main(["--task", "jd"]) == 0
    full = work / "predictions/jd/tfidf.csv"
    before = full.read_bytes()
    assert baseline_main(["--task", "jd", "--split", "dev"]) == 0
    assert baseline_main(["--task", "jd", "--limit", "3"]) == 0
    assert full.read_bytes() == before  # neither the dev predict nor the trial replaced it
    assert len(ids(work / "predictions/jd/test-limit3/tfidf.csv")) == 3
    assert len(ids(work / "predictions/jd/dev/tfidf.csv")) == 36
    origin = read_origin(full)
    assert origin is not None and origin["dataset"] == "jd_test" and origin["split"] == "test"
    assert origin["limit"] is None and len(origin["data_sha256"]) == 64 and origin["rows"] == 12
    assert read_origin(work / "predictions/jd/test-limit3/tfidf.csv")["limit"] == 3


def test_submit_refuses_predictions_of_another_split_or_a_trial(work, capsys):
    assert baseline_main(["--task", "jd", "--split", "dev"]) == 0
    assert baseline_main(["--task", "jd", "--limit", "3"]) == 0
    capsys.readouterr()
    dev = "predictions/jd/dev/tfidf.csv"
    argv = ["submit", "--task", "jd", "--test", "data/jd_test.json", "--out", "submissions/jd/"]
    assert voting_main([*argv, "--pred", dev]) == 2
    err = capsys.readouterr().err
    assert f"{dev} was made from jd_dev (data/jd_dev.json)" in err and "not from data/jd_test.json" in err
    trial = "predictions/jd/test-limit3/tfidf.csv"
    assert voting_main([*argv, "--pred", trial]) == 2
    assert "a trial of the first 3 rows" in capsys.readouterr().err
    assert voting_main([*argv, "--pred", trial, "--limit", "3"]) == 0  # a trial submission of a trial
    assert (work / "submissions/jd/submit.csv").is_file()


def test_vote_and_report_refuse_members_of_different_splits(work, capsys):
    assert baseline_main(["--task", "jd"]) == 0
    assert baseline_main(["--task", "jd", "--split", "dev"]) == 0
    test, dev = "predictions/jd/tfidf.csv", "predictions/jd/dev/tfidf.csv"
    (work / "other.csv").write_bytes((work / test).read_bytes())  # a hand-made copy: no origin, taken as it is
    capsys.readouterr()
    code = voting_main(["vote", test, dev, "--task", "jd", "--out", "voted.csv", "--tie-breaker", "tfidf"])
    assert code == 2 and "a vote needs predictions of the same split" in capsys.readouterr().err
    assert not (work / "voted.csv").exists()
    assert voting_main(["vote", test, "other.csv", "--task", "jd", "--out", "voted.csv", "--tie-breaker", "tfidf"]) == 0
    assert read_origin(work / "voted.csv")["dataset"] == "jd_test"  # the vote carries its members' origin
    report = ["report", dev, "--task", "jd", "--gold", "data/jd_test.json", "--out", "rep", "--tie-breaker", "tfidf"]
    assert voting_main(report) == 2
    assert "not from data/jd_test.json" in capsys.readouterr().err


def test_paper_submission_refuses_keywords_of_another_split(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    header = "uuid,title,author,abstract,Keywords,label\n"
    rows = [
        f"{i},Title {i},A,Abstract about {'cells' if i % 2 else 'graphs'} {i},k{i}; w{i},{i % 2}\n" for i in range(8)
    ]
    (tmp_path / "train.csv").write_text(header + "".join(rows), encoding="utf-8")
    (tmp_path / "test.csv").write_text("uuid,title,author,abstract\n0,T,A,cells\n1,T2,B,graphs\n", encoding="utf-8")
    argv = ["paper", "--train", "train.csv", "--dev", "train.csv", "--test", "test.csv", "--task", "paper"]
    assert adapters_main([*argv, "--tokenizer", "none"]) == 0
    assert baseline_main(["--task", "paper_cls"]) == 0
    assert baseline_main(["--task", "paper_kw", "--split", "dev"]) == 0
    json.loads((tmp_path / "data/paper_report.json").read_text(encoding="utf-8"))
    submit = ["submit", "--task", "paper_cls", "--pred", "predictions/paper_cls/tfidf.csv"]
    submit += ["--test", "data/paper_cls_test.json", "--out", "submissions/paper/"]
    code = voting_main([*submit, "--keywords", "predictions/paper_kw/dev/tfidf.csv"])
    assert code == 2 and "paper_kw_dev" in capsys.readouterr().err and not (tmp_path / "submissions").exists()
