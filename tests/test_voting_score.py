"""Scores against scikit-learn, free-text metrics, and `score` on known files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, mean_absolute_error

from core.metrics import char_f1, keyword_metrics, keyword_set, label_metrics, matthews_from_confusion, text_metrics
from voting.cli import main

GOLD = ["1", "2", "3", "4", "5", "3", "3", "4", "2", "5", "1", "4"]
PRED = ["1", "3", "3", "4", "4", "3", "2", "4", "2", "5", "2", "5"]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def run_json(argv, capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_score_matches_sklearn_on_known_files(tmp_path, capsys):
    # raw generated text in the prediction file: extraction applies before scoring
    raw = [f"Score: {p}" if i % 3 == 0 else p for i, p in enumerate(PRED)]
    pred = write(tmp_path / "pred.csv", "id,prediction\n" + "".join(f"r{i},{p}\n" for i, p in enumerate(raw)))
    gold = write(
        tmp_path / "gold.csv", "id,label\n" + "".join(f"r{i},{g}\n" for i, g in reversed(list(enumerate(GOLD))))
    )
    result = run_json(["score", "--pred", str(pred), "--gold", str(gold), "--task", "judge"], capsys)
    y_true, y_pred = np.array(GOLD, dtype=int), np.array(PRED, dtype=int)
    assert result["n"] == len(GOLD)
    assert result["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert result["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert result["mcc"] == pytest.approx(matthews_corrcoef(y_true, y_pred))
    assert result["mae"] == pytest.approx(mean_absolute_error(y_true, y_pred))
    assert result["unparsed"] == 0
    assert result["labels"] == ["1", "2", "3", "4", "5"]
    assert np.trace(result["confusion"]) == 7 and np.sum(result["confusion"]) == 12


def test_unparsed_counts_as_wrong_like_sklearn_with_a_sentinel():
    pred = list(PRED)
    pred[1] = pred[6] = None
    metrics = label_metrics(GOLD, pred, numeric=True)
    sentinel = ["X" if p is None else p for p in pred]
    labels = sorted(set(GOLD) | {p for p in pred if p is not None})
    assert metrics["unparsed"] == 2
    assert metrics["accuracy"] == pytest.approx(accuracy_score(GOLD, sentinel))
    assert metrics["macro_f1"] == pytest.approx(f1_score(GOLD, sentinel, labels=labels, average="macro"))
    assert metrics["mcc"] == pytest.approx(matthews_corrcoef(GOLD, sentinel))
    parsed = [i for i, p in enumerate(pred) if p is not None]
    assert metrics["mae_n"] == 10
    assert metrics["mae"] == pytest.approx(
        mean_absolute_error([int(GOLD[i]) for i in parsed], [int(pred[i]) for i in parsed])
    )


@pytest.mark.parametrize("seed", range(5))
def test_mcc_matches_sklearn_on_random_confusions(seed):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    confusion = np.zeros((4, 4), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    assert matthews_from_confusion(confusion) == pytest.approx(matthews_corrcoef(y_true, y_pred))
    assert matthews_from_confusion(np.diag([5, 0, 0])) == 0.0  # one class only: undefined → 0, as sklearn


def test_text_metrics():
    result = text_metrics(["北京", "Hello, World", "曹雪芹"], ["北京。", "hello world!", "曹雪"])
    assert result["exact_match"] == pytest.approx(2 / 3)
    assert result["char_f1"] == pytest.approx((1 + 1 + 0.8) / 3)
    assert char_f1("abc", "") == 0.0 and char_f1("", "") == 1.0
    assert text_metrics(["a"], [None]) == {"n": 1, "exact_match": 0.0, "char_f1": 0.0, "unparsed": 1}


def test_score_text_and_json_gold(tmp_path, capsys):
    gold = write(
        tmp_path / "qa_dev.json",
        json.dumps(
            [
                {"id": "q1", "instruction": "首都?", "input": "", "output": "北京"},
                {"id": "q2", "instruction": "作者?", "input": "", "output": "曹雪芹"},
            ],
            ensure_ascii=False,
        ),
    )
    pred = write(tmp_path / "pred.csv", "id,prediction\nq1,北京。\nq2,曹雪\n")
    result = run_json(["score", "--pred", str(pred), "--gold", str(gold), "--task", "qa"], capsys)
    assert result["exact_match"] == 0.5 and result["char_f1"] == pytest.approx(0.9)
    # no --task: 2 distinct gold labels is a small closed set → label metrics
    closed = run_json(["score", "--pred", str(pred), "--gold", str(gold)], capsys)
    assert "macro_f1" in closed and closed["accuracy"] == 0.0
    free = run_json(["score", "--pred", str(pred), "--gold", str(gold), "--text"], capsys)
    assert free["exact_match"] == 0.5


def test_score_reports_unparsed_and_plots(tmp_path, capsys):
    pred = write(tmp_path / "pred.csv", "id,prediction\n1,答案是B\n2,I don't know\n3,C\n")
    gold = write(tmp_path / "gold.csv", "id,label\n1,B\n2,A\n3,D\n")
    plot = tmp_path / "cm.png"
    assert main(["score", "--pred", str(pred), "--gold", str(gold), "--task", "logic", "--plot", str(plot)]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["unparsed"] == 1 and result["accuracy"] == pytest.approx(1 / 3)
    assert "mae" not in result
    assert "1 of 3 predictions unparsed or outside the labels, they abstain (ids 2)" in err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_by_dimension_from_json_gold(tmp_path, capsys):
    gold = write(
        tmp_path / "judge_dev.json",
        json.dumps(
            [
                {"id": "a", "instruction": "", "input": "", "output": "4", "dimension": "流畅性"},
                {"id": "b", "instruction": "", "input": "", "output": "1", "dimension": "选择题"},
                {"id": "c", "instruction": "", "input": "", "output": "0", "dimension": "选择题"},
            ],
            ensure_ascii=False,
        ),
    )
    pred = write(tmp_path / "pred.csv", "id,prediction\na,4\nb,正确\nc,1\n")
    result = run_json(["score", "--pred", str(pred), "--gold", str(gold), "--task", "judge"], capsys)
    assert result["by_group"]["流畅性"]["accuracy"] == 1.0
    assert result["by_group"]["选择题"]["accuracy"] == 0.5


def test_score_bad_input(tmp_path, capsys):
    pred = write(tmp_path / "pred.csv", "id,prediction\n1,A\n2,B\n")
    gold = write(tmp_path / "gold.csv", "id,label\n1,A\n3,B\n")
    assert main(["score", "--pred", str(pred), "--gold", str(gold), "--task", "logic"]) == 2
    err = capsys.readouterr().err
    assert f"{gold} and {pred} have different ids: 1 ids only in {gold} (3); 1 ids only in {pred} (2)" in err
    missing = tmp_path / "nope.csv"
    assert main(["score", "--pred", str(pred), "--gold", str(missing)]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err


def test_keywords_match_as_sets_whatever_the_separator_case_and_closing_full_stop():
    assert keyword_set("ROS; Deep  Learning，cnn.") == {"ros", "deep learning", "cnn"}
    assert keyword_set("机器学习；神经网络。") == {"机器学习", "神经网络"}
    m = keyword_metrics(["ros; slam.", "a;b"], ["slam, ROS", "c"])
    assert m["keyword_precision"] == pytest.approx(2 / 3) and m["keyword_recall"] == pytest.approx(2 / 4)
