"""The TF-IDF + logistic regression floor (`python -m pipeline.baseline`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline.baseline import main, tfidf_predictions


def records(texts_labels: list[tuple[str, str]], prefix: str, **extra) -> list[dict]:
    return [
        {
            "id": f"{prefix}{i}",
            "instruction": "Is it about cats? Answer 1 for yes, 0 for no.",
            "input": text,
            "output": label,
            **extra,
        }
        for i, (text, label) in enumerate(texts_labels)
    ]


CATS = [
    ("the cat purrs", "1"),
    ("a kitten sleeps", "1"),
    ("cats chase mice", "1"),
    ("my cat meows", "1"),
    ("the dog barks", "0"),
    ("a car drives", "0"),
    ("rain falls down", "0"),
    ("dogs fetch sticks", "0"),
]


def test_predictions_follow_the_signal_and_sum_to_one():
    rows = tfidf_predictions(records(CATS, "tr"), records([("a cat purrs", ""), ("a dog barks", "")], "te"))
    assert [r["id"] for r in rows] == ["te0", "te1"]
    assert [r["prediction"] for r in rows] == ["1", "0"]
    for row in rows:
        assert set(row) == {"id", "prediction", "prob_0", "prob_1"}
        assert abs(row["prob_0"] + row["prob_1"] - 1) < 1e-5


def test_one_model_per_dimension_and_a_lone_label():
    train = records(
        [("流畅的文章", "5"), ("不通顺", "1"), ("很流畅", "5"), ("不顺", "1")], "f", dimension="流畅性"
    ) + records([("选对了", "1"), ("也对了", "1")], "c", dimension="选择题")
    test = records([("流畅", ""), ("对", "")], "t", dimension="流畅性")
    test[1]["dimension"] = "选择题"
    rows = tfidf_predictions(train, test, group_col="dimension")
    assert rows[1]["prediction"] == "1" and (rows[1]["prob_1"], rows[1]["prob_5"]) == (1.0, 0.0)  # the lone label
    assert rows[0]["prediction"] in ("1", "5") and abs(rows[0]["prob_1"] + rows[0]["prob_5"] - 1) < 1e-5
    assert [r["dimension"] for r in rows] == ["流畅性", "选择题"]


def test_cli_writes_the_predictions_file(tmp_path: Path, capsys):
    (tmp_path / "cats_train.json").write_text(json.dumps(records(CATS, "tr")), encoding="utf-8")
    (tmp_path / "cats_test.json").write_text(json.dumps(records([("cat", ""), ("dog", "")], "te")), encoding="utf-8")
    (tmp_path / "dataset_info.json").write_text(
        json.dumps({f"cats_{split}": {"file_name": f"cats_{split}.json"} for split in ("train", "test")}),
        encoding="utf-8",
    )
    out = tmp_path / "out" / "tfidf.csv"
    assert main(["--task", "cats", "--data-dir", str(tmp_path), "--out", str(out)]) == 0
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "prediction", "prob_0", "prob_1"] and len(rows) == 2
    assert main(["--task", "missing", "--data-dir", str(tmp_path)]) == 2
    assert "Undefined dataset missing_train" in capsys.readouterr().err


@pytest.mark.shared
def test_cola_dev_matches_the_measured_floor(shared_data: Path, tmp_path: Path):
    """CoLA in-domain train → dev with the baseline as it is: accuracy 0.702, MCC 0.139 (majority class: 0.693, 0).

    The brief's earlier probe measured 0.655 / 0.18 with some other TF-IDF set-up; this one is close on accuracy and
    weaker on MCC (character n-grams of a fixed instruction plus a short sentence carry little).
    """
    from adapters.cli import main as adapters_main
    from core.metrics import label_metrics

    cola = shared_data / "cola"
    assert (
        adapters_main(
            [
                "cola",
                "--train",
                str(cola / "in_domain_train.tsv"),
                "--dev",
                str(cola / "in_domain_dev.tsv"),
                "--name",
                "cola",
                "--data-dir",
                str(tmp_path),
                "--tokenizer",
                "none",
            ]
        )
        == 0
    )
    out = tmp_path / "tfidf.csv"
    assert main(["--task", "cola", "--data-dir", str(tmp_path), "--split", "dev", "--out", str(out)]) == 0
    dev = json.loads((tmp_path / "cola_dev.json").read_text(encoding="utf-8"))
    with out.open(encoding="utf-8", newline="") as handle:
        predicted = {row["id"]: row["prediction"] for row in csv.DictReader(handle)}
    result = label_metrics([r["output"] for r in dev], [predicted[r["id"]] for r in dev])
    assert result["n"] == 527
    assert 0.62 <= result["accuracy"] <= 0.72 and 0.03 <= result["mcc"] <= 0.25, result


def test_a_group_train_lacks_falls_back_and_says_so(capsys):
    """The public judge train is fluency-only: 规范性 rows get the most common allowed label, 选择题 rows too (1)."""
    from adapters import get_task

    train = records([("流畅的文章", "5"), ("不通顺", "3"), ("很流畅", "3"), ("一般", "1")], "f", dimension="流畅性")
    test = records([("文章", ""), ("选了C", ""), ("再来", "")], "t", dimension="规范性")
    test[1]["dimension"] = "选择题"
    rows = tfidf_predictions(train, test, task=get_task("judge"))
    assert [r["prediction"] for r in rows] == ["3", "1", "3"]  # 选择题 may only be 0/1: train's only allowed one
    err = capsys.readouterr().err
    assert "no labelled train rows for dimension '规范性'" in err and "'选择题'" in err


PAPERS = [
    ("Flow cytometry of leukemia cells measures reactive oxygen species.", "Flow cytometry; Leukemia; ROS."),
    ("Deep learning for image segmentation with convolutional networks.", "deep learning; image segmentation"),
    ("Leukemia treatment with histone deacetylase inhibitors in mice.", "Leukemia; HDAC inhibitors"),
    ("A survey of image segmentation benchmarks and metrics.", "image segmentation; survey; benchmark"),
]


def kw_records(pairs: list[tuple[str, str]], prefix: str) -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "instruction": "List the keywords.", "input": f"Title: {text}", "output": keywords}
        for i, (text, keywords) in enumerate(pairs)
    ]


def test_tfidf_keywords_ranks_training_keywords_first_and_keeps_k():
    from pipeline.baseline import tfidf_keywords

    test = kw_records([("Flow cytometry shows leukemia relapse in leukemia patients.", "")], "t")
    (row,) = tfidf_keywords(kw_records(PAPERS, "p"), test)  # k: median of 3, 2, 2, 3 keywords = 2.5 → 2
    assert row["id"] == "t0"
    assert row["prediction"] == "leukemia; flow cytometry"  # training spelling, case folded; count 2 ranks first
    (row,) = tfidf_keywords(kw_records(PAPERS, "p"), test, k=4)
    picked = row["prediction"].split("; ")
    assert picked[:2] == ["leukemia", "flow cytometry"] and len(picked) == 4
    assert "cytometry" not in picked and "flow" not in picked  # inside a term already taken
    assert "relapse" in picked or "patients" in picked  # then the text's own nouns / English words


def test_tfidf_keywords_reads_chinese_text():
    from pipeline.baseline import tfidf_keywords

    train = kw_records(
        [
            ("深度学习方法在图像识别中的应用", "深度学习; 图像识别"),
            ("图像识别的新算法", "图像识别"),
            ("城市交通规划", "交通"),
        ],
        "p",
    )
    (row,) = tfidf_keywords(train, kw_records([("基于深度学习的图像识别", "")], "t"), k=2)
    assert set(row["prediction"].split("; ")) == {"深度学习", "图像识别"}


def test_cli_gives_a_keywords_task_the_keyword_baseline(tmp_path: Path):
    (tmp_path / "kw_train.json").write_text(json.dumps(kw_records(PAPERS, "p")), encoding="utf-8")
    test = kw_records([("Image segmentation of leukemia cells.", "")], "t")
    (tmp_path / "kw_test.json").write_text(json.dumps(test), encoding="utf-8")
    (tmp_path / "dataset_info.json").write_text(
        json.dumps(
            {f"kw_{split}": {"file_name": f"kw_{split}.json", "task": "keywords"} for split in ("train", "test")}
        ),
        encoding="utf-8",
    )
    out = tmp_path / "tfidf.csv"
    assert main(["--task", "kw", "--data-dir", str(tmp_path), "--out", str(out)]) == 0
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"id": "t0", "prediction": "image segmentation; leukemia"}]
