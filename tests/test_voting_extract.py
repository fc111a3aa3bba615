"""From generated text to labels, per task, and the readers' checks."""

from __future__ import annotations

import pytest

from adapters import TASKS
from core.extract import extract_label, extract_labels, normalize_text
from core.tasks import BINARY, BINARY_SYNONYMS, TaskError
from voting import VotingError
from voting.cli import build_parser, task_from_args
from voting.predictions import read_gold, read_predictions_csv

SCORES_1_5 = ("1", "2", "3", "4", "5")
LETTERS = ("A", "B", "C", "D", "E")  # a five-option question's letters


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("4", SCORES_1_5, "4"),
        ("1\n", SCORES_1_5, "1"),
        (" 4.0 ", SCORES_1_5, "4"),
        ("Score: 4", SCORES_1_5, "4"),
        ("评分：4分", SCORES_1_5, "4"),
        ("得分为３", SCORES_1_5, "3"),  # full-width digit
        ("流畅性评分：4（满分5分）", SCORES_1_5, "4"),
        ("我给4分", SCORES_1_5, "4"),
        ("4/5", SCORES_1_5, "4"),
        ("The answer is 4 out of 5.", SCORES_1_5, "4"),
        ("答案是B。", LETTERS, "B"),
        ("b", LETTERS, "B"),
        ("Ｃ", LETTERS, "C"),
        ("The answer is (D).", LETTERS, "D"),
        ("选项：A", LETTERS, "A"),
        ("根据条件，只有 E 满足", LETTERS, "E"),
        ("0", BINARY, "0"),
        ("yes", BINARY, "1"),
        ("是", BINARY, "1"),
        ("否。", BINARY, "0"),
        ("答案：否", BINARY, "0"),
    ],
)
def test_extract_label(text, labels, expected):
    synonyms = BINARY_SYNONYMS if labels == BINARY else {}
    assert extract_label(text, labels, synonyms) == (expected, "ok")


@pytest.mark.parametrize(
    ("text", "labels", "status"),
    [
        ("7", SCORES_1_5, "out_of_set"),
        ("0", SCORES_1_5, "out_of_set"),
        ("F", LETTERS, "out_of_set"),
        ("2", BINARY, "out_of_set"),
        ("", SCORES_1_5, "unparsed"),
        ("I cannot judge this text", SCORES_1_5, "unparsed"),
        ("4 or 5", SCORES_1_5, "unparsed"),
        ("A or B", LETTERS, "unparsed"),
        ("yes", SCORES_1_5, "unparsed"),
        ("4.5", SCORES_1_5, "out_of_set"),
    ],
)
def test_extract_label_failures(text, labels, status):
    assert extract_label(text, labels, {}) == (None, status)


def test_task_specific_synonyms():
    cola, qqp = TASKS["cola"], TASKS["qqp"]
    assert extract_label("unacceptable", cola.labels, cola.synonyms) == ("0", "ok")
    assert extract_label("Acceptable.", cola.labels, cola.synonyms) == ("1", "ok")
    assert extract_label("not duplicate", qqp.labels, qqp.synonyms) == ("0", "ok")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No, the two questions ask different things.", "0"),  # QQP generations open with the answer word
        ("Yes. Both ask how to learn Python.", "1"),
        ("Not duplicate: one asks about cost", "0"),
        ("正确，因为回复选了C", "1"),
        ("对于这个问题", None),  # 对 opens a longer word: not an answer
        ("N/A", None),  # single letters do not count as a leading word
        ("Nothing to say", None),
    ],
)
def test_binary_answers_open_with_yes_or_no(text, expected):
    qqp = TASKS["qqp"]
    assert extract_label(text, qqp.labels, qqp.synonyms)[0] == expected


def test_judge_label_set_depends_on_dimension():
    judge = TASKS["judge"]
    extracted = extract_labels(
        ["3", "3", "1", "yes", "0", "0"], judge, ["流畅性", "选择题", "选择题", "选择题", "规范性", ""]
    )
    assert extracted.labels.tolist() == ["3", None, "1", "1", None, "0"]
    assert extracted.status.tolist() == ["ok", "out_of_set", "ok", "ok", "out_of_set", "ok"]
    unknown = extract_labels(["3"], judge, ["文采"])
    assert unknown.status.tolist() == ["unknown group"]


def test_free_text_keeps_the_stripped_answer():
    assert extract_label("  北京 \n", None) == ("北京", "ok")
    assert extract_label("   ", None) == ("", "empty")  # an empty free-text answer: an answer that scores 0


def test_normalize_text():
    assert normalize_text("  Ｈｅｌｌｏ，  World！ ") == "hello world"
    assert normalize_text("《红楼梦》的作者是曹雪芹。") == "红楼梦 的作者是曹雪芹"


def test_task_from_args():
    def task(*argv):
        return task_from_args(build_parser().parse_args(["score", "--pred", "p", "--gold", "g", *argv]))

    assert task("--task", "logic").labels == LETTERS
    assert task("--labels", "1, 2,3").labels == ("1", "2", "3")
    assert task("--labels", "0,1").synonyms == BINARY_SYNONYMS
    assert task("--text").free_text
    with pytest.raises(TaskError, match="unknown task"):
        task("--task", "chess")
    with pytest.raises(VotingError, match="only one"):
        task("--task", "logic", "--labels", "1,2")


def test_read_predictions_csv_extracts_and_reads_gb18030(tmp_path):
    path = tmp_path / "glm4.csv"
    path.write_bytes("id,prediction,dimension\nTE1,评分：4,流畅性\nTE2,??,规范性\n".encode("gb18030"))
    predictions = read_predictions_csv(path, TASKS["judge"])
    assert predictions.name == "glm4"
    assert predictions.labels.tolist() == ["4", None]
    assert predictions.unparsed_ids == ["TE2"]
    assert predictions.extra_columns == ["dimension"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("id,prediction\n", "header only"),
        ("id,answer\n1,4\n", "expected the columns id,prediction"),
        ("id,prediction\n1,4\n2,3\n1,5\n", "duplicate ids 1 \\(first at row 2\\)"),
        ("id,prediction\n1,4\n,3\n", "row 3: empty id"),
    ],
)
def test_read_predictions_csv_bad_input(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(VotingError, match=message) as err:
        read_predictions_csv(path, TASKS["judge"])
    assert str(path) in str(err.value)


def test_read_gold_json_and_csv(tmp_path):
    json_path = tmp_path / "dev.json"
    json_path.write_text(
        '[{"id": "a#0", "instruction": "q", "input": "", "output": "B"},'
        ' {"id": "a#1", "instruction": "q", "input": "", "output": "c"}]',
        encoding="utf-8",
    )
    assert read_gold(json_path, TASKS["logic"]).labels.tolist() == ["B", "C"]
    csv_path = tmp_path / "gold.csv"
    csv_path.write_text("id,label\n1,B\n2,maybe\n", encoding="utf-8")
    with pytest.raises(VotingError, match="row 3 id 2: label is 'maybe'"):
        read_gold(csv_path, TASKS["logic"])


def test_a_prediction_outside_the_labels_abstains_but_a_submission_refuses_it(tmp_path, capsys):
    """'3333' for a 1–5 score does not stop a vote (it abstains, counted); a submission cannot hold it."""
    path = tmp_path / "m.csv"
    path.write_text("id,prediction\n1,4\n2,3333\n", encoding="utf-8")
    assert read_predictions_csv(path, TASKS["judge"]).labels.tolist() == ["4", None]
    assert "1 predictions outside the judge labels abstain, e.g. '3333' (ids 2)" in capsys.readouterr().err
    with pytest.raises(VotingError, match="row 3 id 2: prediction is '3333', expected a judge label"):
        read_predictions_csv(path, TASKS["judge"], refuse_outside=True)
