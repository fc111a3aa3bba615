"""Adapters: competition files → alpaca records + dataset_info.json, on inputs built in tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import JUDGE_HEADER, JUDGE_ROWS, SAMPLES, convert, load, write_csv, write_xlsx
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import ADAPTERS
from adapters.cli import main
from adapters.judge import judge_record
from adapters.logic import logic_records
from adapters.readers import RowError
from adapters.records import sample

ROOT = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, objects: list[object]) -> Path:
    path.write_text("".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in objects), encoding="utf-8")
    return path


def registry(data_dir: Path) -> dict:
    return json.loads((data_dir / "dataset_info.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- judge


def test_judge_record_is_a_pure_row_function():
    row = dict(zip(JUDGE_HEADER, JUDGE_ROWS[1], strict=True))
    assert judge_record(row, labelled=True) == {
        "id": "TR2",
        "instruction": "按创作要求给文章的规范性打分，1-5分，5分最规范，只输出数字。",
        "input": "要求：请以“秋天”为主题写一篇文章\n文章：秋天到了，树叶黄了。",
        "output": "3",
        "dimension": "规范性",
    }
    assert judge_record({**row, "标注分值": " 4.0 "}, labelled=True)["output"] == "4"
    assert judge_record({**row, "标注分值": ""}, labelled=False)["output"] == ""
    with pytest.raises(RowError, match='标注分值 is "五", expected an integer 1–5'):
        judge_record({**row, "标注分值": "五"}, labelled=True)
    choice = dict(zip(JUDGE_HEADER, JUDGE_ROWS[2], strict=True))
    with pytest.raises(RowError, match="expected 0 or 1 for 选择题"):
        judge_record({**choice, "标注分值": "3"}, labelled=True)


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8", "utf-8-sig", "xlsx"])
def test_judge_reads_each_encoding_and_xlsx_alike(tmp_path, capsys, encoding):
    if encoding == "xlsx":
        source = write_xlsx(tmp_path / "train.xlsx", [JUDGE_HEADER] + [[*r[:4], int(r[4])] for r in JUDGE_ROWS])
    else:
        source = write_csv(tmp_path / "train.csv", JUDGE_ROWS, encoding, JUDGE_HEADER)
    code, out, err = convert(capsys, "judge", tmp_path / "data", "--train", source)
    assert code == 0, err
    records = load(tmp_path / "data", "t_train")
    assert [r["id"] for r in records] == ["TR1", "TR2", "TR3", "TR4"]
    assert [r["output"] for r in records] == ["5", "3", "0", "1"]
    assert [r["dimension"] for r in records] == ["流畅性", "规范性", "选择题", "规范性"]
    assert records[0]["input"] == "今天天气很好，我们去公园散步。"
    report = json.loads((tmp_path / "data" / "t_report.json").read_text(encoding="utf-8"))["datasets"]["t_train"]
    assert report["empty_content"] == {"规范性": 1}  # kept and counted
    assert report["labels"] == {"流畅性 5": 1, "规范性 1": 1, "规范性 3": 1, "选择题 0": 1}
    assert "t_train" in out and "empty_content" in out


def test_judge_sample_files_keep_test_labels(tmp_path, capsys):
    code, out, err = convert(
        capsys, "judge", tmp_path, "--train", SAMPLES / "judge_train.csv", "--test", SAMPLES / "judge_test.csv"
    )
    assert code == 0, err
    train, test = load(tmp_path, "t_train"), load(tmp_path, "t_test")
    assert len(train) == 36 and len(test) == 12
    for records in (train, test):
        dims = [r["dimension"] for r in records]
        assert dims.count("流畅性") == dims.count("规范性") == dims.count("选择题") == len(records) // 3
        assert all(r["output"] in ("0", "1") if r["dimension"] == "选择题" else r["output"] in "12345" for r in records)
    assert all(r["output"] for r in test)  # the demo scores against these labels
    assert (SAMPLES / "judge_train.csv").read_bytes().decode("gb18030").startswith("数据编号,创作要求,评判维度")


def test_judge_test_alone_without_labels(tmp_path, capsys):
    source = write_csv(tmp_path / "test.csv", [r[:4] for r in JUDGE_ROWS], "utf-8", JUDGE_HEADER[:4])
    code, _, err = convert(capsys, "judge", tmp_path / "data", "--test", source)
    assert code == 0, err
    assert [r["output"] for r in load(tmp_path / "data", "t_test")] == ["", "", "", ""]
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if not p.name.startswith(".")) == [
        "dataset_info.json",
        "t_report.json",
        "t_test.json",
    ]


def test_judge_skips_unlabelled_train_rows_and_reports_them(tmp_path, capsys):
    rows = [*JUDGE_ROWS, ["TR5", "", "流畅性", "一句话。", ""]]
    code, out, err = convert(
        capsys, "judge", tmp_path, "--train", write_csv(tmp_path / "train.csv", rows, header=JUDGE_HEADER)
    )
    assert code == 0, err
    report = json.loads((tmp_path / "t_report.json").read_text(encoding="utf-8"))["datasets"]["t_train"]
    assert report["rows_in"] == 5 and report["rows_out"] == 4 and report["skipped"] == 1
    assert report["skipped_rows"] == [
        {"where": f"{tmp_path / 'train.csv'} row 6", "reason": "标注分值 is empty, a 流畅性 training row needs a score"}
    ]
    assert "skipped" in out and "row 6" in out


def test_max_per_label_balances_train_only_and_says_so(tmp_path, capsys):
    rows = [[f"TR{i}", "", "流畅性", f"第{i}句话。", str(3 if i < 12 else 1 + i % 2)] for i in range(16)]
    train = _judge_file(tmp_path, rows)
    test = write_csv(tmp_path / "test.csv", rows, header=JUDGE_HEADER)
    code, out, _ = convert(capsys, "judge", tmp_path / "data", "--train", train, "--test", test, "--max-per-label", 3)
    assert code == 0
    kept = load(tmp_path / "data", "t_train")
    assert sorted(r["output"] for r in kept) == ["1", "1", "2", "2", "3", "3", "3"]  # 12 threes → 3; 2 and 2 kept
    assert [r["id"] for r in kept] == sorted((r["id"] for r in kept), key=lambda i: int(i[2:]))  # file order
    assert len(load(tmp_path / "data", "t_test")) == 16  # never the scored split
    assert "at most 3 records per label (seeded): kept 7 of 16" in out
    again = tmp_path / "again"
    assert convert(capsys, "judge", again, "--train", train, "--max-per-label", 3)[0] == 0
    assert load(again, "t_train") == kept  # seeded: the same rows every run


def test_registry_entries_have_full_columns_and_other_entries_survive(tmp_path, capsys):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}), encoding="utf-8")
    source = write_csv(tmp_path / "train.csv", JUDGE_ROWS, header=JUDGE_HEADER)
    assert convert(capsys, "judge", tmp_path, "--train", source, "--test", source)[0] == 0
    info = registry(tmp_path)
    assert info["mine"] == {"file_name": "mine.json"}
    assert info["t_train"] == {
        "file_name": "t_train.json",
        "formatting": "alpaca",
        "columns": {"prompt": "instruction", "query": "input", "response": "output"},
        "task": "judge",  # the task later stages read (LLaMA-Factory ignores the key)
    }
    assert info["t_test"]["file_name"] == "t_test.json"


def test_rerun_is_idempotent(tmp_path, capsys):
    source = write_csv(tmp_path / "train.csv", JUDGE_ROWS, header=JUDGE_HEADER)
    data = tmp_path / "data"
    assert convert(capsys, "judge", data, "--train", source, "--dev", source)[0] == 0
    first = {p.name: p.read_bytes() for p in data.iterdir()}
    assert convert(capsys, "judge", data, "--train", source, "--dev", source)[0] == 0
    assert {p.name: p.read_bytes() for p in data.iterdir()} == first
    report = json.loads(first["t_report.json"])
    assert report["overlap"]["t_dev"]["count"] == 4  # dev = train here: every text overlaps


# ---------------------------------------------------------------- refusals: message, exit 2, nothing written


def _judge_file(tmp_path: Path, rows: list[list[str]], header=JUDGE_HEADER, encoding="gb18030") -> Path:
    return write_csv(tmp_path / "train.csv", rows, encoding, header)


def _filler(n: int) -> list[list[str]]:
    return [[f"TR{i}", "", "流畅性", "一句通顺的话。", "4"] for i in range(n)]


BROKEN = {
    "judge-missing-column": (
        "judge",
        lambda d: _judge_file(d, [r[:4] for r in JUDGE_ROWS], JUDGE_HEADER[:4]),
        "train.csv row 1 (header): missing column 标注分值",
    ),
    "judge-bad-score": (
        "judge",
        lambda d: _judge_file(d, _filler(15) + [["TR99", "", "流畅性", "话。", "五"]]),
        'train.csv row 17: 标注分值 is "五", expected an integer 1–5',
    ),
    "judge-unknown-dimension": (
        "judge",
        lambda d: _judge_file(d, [JUDGE_ROWS[0], ["TR9", "", "通顺度", "话。", "3"]]),
        'train.csv row 3: 评判维度 is "通顺度", expected one of 流畅性, 规范性, 选择题',
    ),
    "judge-score-out-of-range": (
        "judge",
        lambda d: _judge_file(d, [["TR9", "", "规范性", "话。", "6"]]),
        'row 2: 标注分值 is "6", expected an integer 1–5 for 规范性',
    ),
    "judge-bad-encoding": (
        "judge",
        lambda d: _write_bytes(d / "train.csv", "数据编号,创作要求\n".encode() + b"\xff\xfe\x00bad\n"),
        "train.csv line 2 (byte",
    ),
    "judge-empty-file": ("judge", lambda d: _write_bytes(d / "train.csv", b""), "train.csv: the file is empty"),
    "judge-header-only": ("judge", lambda d: _judge_file(d, []), "only a header row, expected data rows"),
    "judge-malformed-row": (
        "judge",
        lambda d: _judge_file(d, [JUDGE_ROWS[0], ["TR9", "流畅性", "话。"]]),
        "train.csv row 3: 3 fields, expected 5 (数据编号, 创作要求, 评判维度, 待评判内容, 标注分值)",
    ),
    "judge-multiline-cell-row": (
        "judge",
        lambda d: _judge_file(d, [["TR1", "", "流畅性", "第一行\n第二行", "4"], ["TR2", "", "流畅性", "话。", "x"]]),
        'train.csv row 3 (line 4): 标注分值 is "x"',
    ),
    "judge-not-xlsx": (
        "judge",
        lambda d: _write_bytes(d / "train.xlsx", b"not a workbook"),
        "train.xlsx: not a readable XLSX",
    ),
    "cola-malformed-row": (
        "cola",
        lambda d: _write_bytes(d / "train.tsv", b"gj04\t1\t\tGood.\ngj04\t1\tBad row\n"),
        "train.tsv line 2: 3 tab-separated fields, expected 4 (source, label, mark, sentence)",
    ),
    "cola-bad-label": (
        "cola",
        lambda d: _write_bytes(d / "train.tsv", b"gj04\tyes\t\tGood.\n"),
        'train.tsv line 1: column 2 (label) is "yes", expected 0 or 1',
    ),
    "cola-empty-file": ("cola", lambda d: _write_bytes(d / "train.tsv", b"\n\n"), "train.tsv: the file is empty"),
    "qqp-missing-column": (
        "qqp",
        lambda d: _write_bytes(d / "train.tsv", b"id\tquestion1\tquestion2\n1\ta?\tb?\n"),
        "train.tsv line 1 (header): missing column is_duplicate",
    ),
    "logic-answer-outside-options": (
        "logic",
        lambda d: write_jsonl(d / "train.jsonl", [_problem(answer="E")]),
        'train.jsonl line 1: questions[0].answer is "E", expected a letter A–D (4 options)',
    ),
    "logic-missing-answer": (
        "logic",
        lambda d: write_jsonl(d / "train.jsonl", [_problem(answer=None)]),
        "train.jsonl line 1: questions[0].answer is missing",
    ),
    "logic-malformed-json": (
        "logic",
        lambda d: _write_bytes(d / "train.jsonl", b'{"problem": "x"\n'),
        "train.jsonl line 1: not valid JSON",
    ),
    "logic-missing-key": (
        "logic",
        lambda d: write_jsonl(d / "train.jsonl", [{"problem": "p", "id": "x"}]),
        'train.jsonl line 1: missing key "questions"',
    ),
    "paper-bad-label": (
        "paper",
        lambda d: write_csv(
            d / "train.csv",
            [["1", "T", "A", "Abs", "k1; k2", "yes"]],
            "utf-8",
            ["uuid", "title", "author", "abstract", "Keywords", "label"],
        ),
        'train.csv row 2: label is "yes", expected 0 or 1 (1 = medical)',
    ),
    "paper-missing-column": (
        "paper",
        lambda d: write_csv(
            d / "train.csv", [["1", "T", "A", "k", "1"]], "utf-8", ["uuid", "title", "author", "Keywords", "label"]
        ),
        "train.csv row 1 (header): missing column abstract",
    ),
    "qa-conversation-without-output": (
        "qa",
        lambda d: write_jsonl(d / "train.jsonl", [{"conversation": [{"input": "q"}]}]),
        "train.jsonl line 1: conversation[0] is",
    ),
    "qa-unknown-keys": (
        "qa",
        lambda d: write_jsonl(d / "train.jsonl", [{"question": "q", "answer": "a"}]),
        'train.jsonl line 1: keys question, answer, expected {"conversation": [...]} or {"input", "output"}',
    ),
    "qa-three-columns": (
        "qa",
        lambda d: write_xlsx(d / "train.xlsx", [["问题", "答案", "备注"], ["q", "a", "n"]]),
        "expected two columns: question, answer",
    ),
    "qa-docx-odd-paragraphs": (
        "qa",
        lambda d: _docx(d / "train.docx", ["问：一？", "答：二。", "问：三？"]),
        'train.docx paragraph 3: "问：三？" has no answer after it',
    ),
}


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _problem(answer: str | None = "B", options: int = 4, pid: str = "p0") -> dict:
    question = {"question": "选择题 1：谁对？", "options": [f"选项{i}" for i in range(options)]}
    if answer is not None:
        question["answer"] = answer
    return {"problem": "有四个人。", "questions": [question], "id": pid}


def _docx(path: Path, paragraphs: list[str]) -> Path:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    document.save(str(path))
    return path


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_input_is_refused_with_file_row_column_and_nothing_is_written(tmp_path, capsys, case):
    task, make, message = BROKEN[case]
    source = make(tmp_path)
    data = tmp_path / "data"
    code, out, err = convert(capsys, task, data, "--train", source)
    assert code == 2
    assert message in err, err
    assert "Traceback" not in err and out == ""
    assert not data.exists()


def test_a_bad_test_file_stops_the_whole_run(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text('{"mine": {"file_name": "m.json"}}', encoding="utf-8")
    good = write_csv(tmp_path / "train.csv", JUDGE_ROWS, header=JUDGE_HEADER)
    bad = write_csv(tmp_path / "test.csv", [["TE1", "", "流畅性", "话。", "9"]], header=JUDGE_HEADER)
    code, _, err = convert(capsys, "judge", data, "--train", good, "--test", bad)
    assert code == 2 and 'test.csv row 2: 标注分值 is "9"' in err
    assert sorted(p.name for p in data.iterdir()) == ["dataset_info.json"]
    assert registry(data) == {"mine": {"file_name": "m.json"}}


def test_a_broken_registry_is_refused_before_writing(tmp_path, capsys):
    (tmp_path / "dataset_info.json").write_text("{not json", encoding="utf-8")
    code, _, err = convert(
        capsys, "judge", tmp_path, "--train", write_csv(tmp_path / "train.csv", JUDGE_ROWS, header=JUDGE_HEADER)
    )
    assert code == 2 and "dataset_info.json: not valid JSON" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset_info.json", "train.csv"]


def test_fit_cutoff_without_a_tokenizer_is_refused_before_writing(tmp_path, capsys):
    source = write_csv(tmp_path / "train.csv", JUDGE_ROWS, header=JUDGE_HEADER)
    code, _, err = convert(capsys, "judge", tmp_path / "data", "--train", source, "--tokenizer", "none", "--fit-cutoff")
    assert code == 2 and "--fit-cutoff needs a tokenizer" in err and "nothing was written" in err
    assert not (tmp_path / "data").exists()


def test_no_input_and_bad_name_are_refused(tmp_path, capsys):
    assert convert(capsys, "judge", tmp_path)[2].count("no input") == 1
    source = write_csv(tmp_path / "train.csv", JUDGE_ROWS, header=JUDGE_HEADER)
    code, _, err = convert(capsys, "judge", tmp_path, "--train", source, name="../x")
    assert code == 2 and "--name '../x'" in err


def test_cli_process_exits_2_without_traceback(tmp_path):
    source = _write_bytes(tmp_path / "train.csv", b"")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapters",
            "judge",
            "--train",
            str(source),
            "--name",
            "x",
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "train.csv: the file is empty" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- glue


def test_cola_reads_quotes_literally_and_numbers_rows(tmp_path, capsys):
    lines = ['gj04\t1\t\tHe said "hi" to me.', "gj04\t0\t*\tThe more he.", "cj99\t1\t\tIt's 'fine'."]
    source = _write_bytes(tmp_path / "dev.tsv", ("\n".join(lines) + "\n").encode())
    code, _, err = convert(capsys, "cola", tmp_path / "d", "--dev", source)
    assert code == 0, err
    records = load(tmp_path / "d", "t_dev")
    assert [r["id"] for r in records] == ["dev-1", "dev-2", "dev-3"]
    assert records[0]["input"] == 'He said "hi" to me.' and records[2]["input"] == "It's 'fine'."
    assert [r["output"] for r in records] == ["1", "0", "1"]


def test_cola_max_train_stratified_and_first_dev(tmp_path, capsys):
    rows = [f"s\t{int(i % 10 >= 3)}\t\tSentence {i}." for i in range(100)]  # 30 % zeros
    train = _write_bytes(tmp_path / "train.tsv", ("\n".join(rows) + "\n").encode())
    code, out, err = convert(
        capsys,
        "cola",
        tmp_path / "d",
        "--train",
        train,
        "--dev",
        train,
        "--max-train",
        "20",
        "--stratify",
        "--first-dev",
        "15",
    )
    assert code == 0, err
    records = load(tmp_path / "d", "t_train")
    assert len(records) == 20 and sum(r["output"] == "0" for r in records) == 6
    assert [r["id"] for r in records] == sorted((r["id"] for r in records), key=lambda i: int(i.split("-")[1]))
    assert [r["id"] for r in load(tmp_path / "d", "t_dev")] == [f"dev-{i}" for i in range(1, 16)]
    assert "sampled: 20 of 100 rows" in out
    again = convert(capsys, "cola", tmp_path / "e", "--train", train, "--max-train", "20", "--stratify")
    assert again[0] == 0 and load(tmp_path / "e", "t_train") == records  # seeded


def test_sample_is_seeded_and_keeps_file_order():
    records = [{"id": str(i), "output": str(i % 2)} for i in range(50)]
    picked = sample(records, 10, seed=1, stratify=False)
    assert picked == sample(records, 10, seed=1, stratify=False) and len(picked) == 10
    assert [int(r["id"]) for r in picked] == sorted(int(r["id"]) for r in picked)
    assert sum(r["output"] == "1" for r in sample(records, 10, seed=3, stratify=True)) == 5


def test_qqp_header_and_crlf(tmp_path, capsys):
    text = (
        'id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\r\n7\t1\t2\tHow?\tWhy?\t0\r\n9\t3\t4\tA "b"?\tA b?\t1\r\n'
    )
    code, _, err = convert(capsys, "qqp", tmp_path / "d", "--train", _write_bytes(tmp_path / "t.tsv", text.encode()))
    assert code == 0, err
    records = load(tmp_path / "d", "t_train")
    assert [(r["id"], r["input"], r["output"]) for r in records] == [
        ("7", "Q1: How?\nQ2: Why?", "0"),
        ("9", 'Q1: A "b"?\nQ2: A b?', "1"),
    ]
    test = _write_bytes(tmp_path / "test.tsv", b"id\tquestion1\tquestion2\n5\tA?\tB?\n")
    assert convert(capsys, "qqp", tmp_path / "d", "--test", test)[0] == 0
    assert load(tmp_path / "d", "t_test")[0]["output"] == ""


# ---------------------------------------------------------------- logic


def test_logic_one_record_per_question():
    problem = {
        "problem": "P",
        "id": "r_000",
        "questions": [
            {"question": "Q0", "options": ["x", "y"], "answer": "B"},
            {"question": "Q1", "options": ["a", "b", "c", "d", "e"], "answer": "E"},
        ],
    }
    records = logic_records(problem, labelled=True)
    assert [r["id"] for r in records] == ["r_000#0", "r_000#1"]
    assert records[0]["input"] == "P\n\nQ0\nA: x\nB: y" and records[0]["output"] == "B"
    assert records[1]["input"].endswith("E: e") and records[1]["output"] == "E"
    with pytest.raises(RowError, match=r"questions\[0\]\.options is .*expected a list of 2 to 5 options"):
        logic_records({**problem, "questions": [{"question": "q", "options": ["only"]}]}, labelled=False)


def test_logic_test_file_without_answers(tmp_path, capsys):
    source = write_jsonl(
        tmp_path / "test.jsonl", [_problem(answer=None, pid="a"), _problem(answer=None, options=2, pid="b")]
    )
    code, _, err = convert(capsys, "logic", tmp_path / "d", "--test", source)
    assert code == 0, err
    assert [(r["id"], r["output"]) for r in load(tmp_path / "d", "t_test")] == [("a#0", ""), ("b#0", "")]


# ---------------------------------------------------------------- paper


def test_paper_writes_cls_and_kw_datasets(tmp_path, capsys):
    header = ["uuid", "title", "author", "abstract", "Keywords", "label"]
    rows = [
        ["1", "Heart study", "A", "We studied hearts.", "heart; study", "1"],
        ["2", "Printers", "B", "", "print", "0"],
    ]
    code, out, err = convert(
        capsys, "paper", tmp_path / "d", "--train", write_csv(tmp_path / "t.csv", rows, "utf-8", header)
    )
    assert code == 0, err
    cls, kw = load(tmp_path / "d", "t_cls_train"), load(tmp_path / "d", "t_kw_train")
    assert [(r["id"], r["output"]) for r in cls] == [("1", "1"), ("2", "0")]
    assert [(r["id"], r["output"]) for r in kw] == [("1", "heart; study"), ("2", "print")]
    assert cls[1]["input"] == "Title: Printers\nAbstract: "
    assert set(registry(tmp_path / "d")) == {"t_cls_train", "t_kw_train"}
    report = json.loads((tmp_path / "d" / "t_report.json").read_text(encoding="utf-8"))["datasets"]
    assert report["t_cls_train"]["empty_abstract"] == 1 and report["t_kw_train"]["labels"] == "free text"
    test = write_csv(tmp_path / "b.csv", [["9", "T", "A", "Abs"]], "utf-8", header[:4])
    assert convert(capsys, "paper", tmp_path / "d", "--test", test)[0] == 0
    assert load(tmp_path / "d", "t_kw_test")[0]["output"] == load(tmp_path / "d", "t_cls_test")[0]["output"] == ""


def test_paper_builds_only_the_datasets_its_file_has(tmp_path, capsys):
    """A keywords-only train file (the public A-board layout) gives NAME_kw_train; label-only gives NAME_cls_train."""
    header = ["uuid", "title", "author", "abstract", "Keywords"]
    kw_only = write_csv(tmp_path / "kw.csv", [["1", "T", "A", "Abs", "heart; study"]], "utf-8", header)
    code, _, err = convert(capsys, "paper", tmp_path / "d", "--train", kw_only, name="p")
    assert code == 0, err
    assert set(registry(tmp_path / "d")) == {"p_kw_train"}
    assert registry(tmp_path / "d")["p_kw_train"]["task"] == "keywords"
    label_only = write_csv(tmp_path / "cls.csv", [["1", "T", "A", "Abs", "1"]], "utf-8", [*header[:4], "label"])
    assert convert(capsys, "paper", tmp_path / "e", "--train", label_only, name="p")[0] == 0
    assert set(registry(tmp_path / "e")) == {"p_cls_train"}
    neither = write_csv(tmp_path / "none.csv", [["1", "T", "A", "Abs"]], "utf-8", header[:4])
    code, _, err = convert(capsys, "paper", tmp_path / "f", "--train", neither, name="p")
    assert code == 2 and "neither label nor Keywords" in err and not (tmp_path / "f").exists()


# ---------------------------------------------------------------- qa


def test_qa_xtuner_conversations_keep_system_and_history(tmp_path, capsys):
    system = "你是公考助手"
    source = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"conversation": [{"system": system, "input": "问一", "output": "答一"}]},
            {
                "conversation": [
                    {"system": system, "input": "问二", "output": "答二"},
                    {"input": "追问", "output": "答三"},
                ]
            },
            {"conversation": [{"system": system, "input": "", "output": "无问"}]},
        ],
    )
    code, out, err = convert(capsys, "qa", tmp_path / "d", "--train", source)
    assert code == 0, err
    records = load(tmp_path / "d", "t_train")
    assert records == [
        {"id": "train-1", "instruction": "问一", "input": "", "output": "答一", "system": system, "history": []},
        {
            "id": "train-2",
            "instruction": "追问",
            "input": "",
            "output": "答三",
            "system": system,
            "history": [["问二", "答二"]],
        },
    ]
    assert registry(tmp_path / "d")["t_train"]["columns"] == {
        "prompt": "instruction",
        "query": "input",
        "response": "output",
        "system": "system",
        "history": "history",
    }
    assert "line 3: the question is empty" in out


def test_qa_input_output_jsonl_maps_no_system(tmp_path, capsys):
    source = write_jsonl(
        tmp_path / "p.jsonl", [{"input": "q1", "output": "a1"}, {"input": "q2", "output": "a2", "id": 7}]
    )
    assert convert(capsys, "qa", tmp_path / "d", "--train", source)[0] == 0
    assert [(r["id"], r["instruction"], r["output"]) for r in load(tmp_path / "d", "t_train")] == [
        ("train-1", "q1", "a1"),
        ("7", "q2", "a2"),
    ]
    assert "system" not in registry(tmp_path / "d")["t_train"]["columns"]


@pytest.mark.parametrize("header", [True, False])
def test_qa_two_column_xlsx(tmp_path, capsys, header):
    rows = ([["问题", "答案"]] if header else []) + [["一加一？", "二"], ["天空的颜色？", 1234]]
    code, _, err = convert(capsys, "qa", tmp_path / "d", "--train", write_xlsx(tmp_path / "qa.xlsx", rows))
    assert code == 0, err
    records = load(tmp_path / "d", "t_train")
    assert [(r["instruction"], r["output"]) for r in records] == [("一加一？", "二"), ("天空的颜色？", "1234")]
    assert records[0]["id"] == ("train-2" if header else "train-1")


def test_qa_docx_alternating_paragraphs(tmp_path, capsys):
    source = _docx(tmp_path / "qa.docx", ["问：中国的首都是哪里？", "答：北京。", "", "Q: 1+1?", "A: 2"])
    code, _, err = convert(capsys, "qa", tmp_path / "d", "--train", source)
    assert code == 0, err
    assert [(r["id"], r["instruction"], r["output"]) for r in load(tmp_path / "d", "t_train")] == [
        ("train-1", "中国的首都是哪里？", "北京。"),
        ("train-2", "1+1?", "2"),
    ]


def test_drop_duplicates_lists_what_it_dropped(tmp_path, capsys):
    rows = [{"input": "q", "output": "a"}, {"input": "q", "output": "a"}, {"input": "q", "output": "b"}]
    source = write_jsonl(tmp_path / "d.jsonl", rows)
    assert convert(capsys, "qa", tmp_path / "a", "--train", source)[0] == 0
    kept = json.loads((tmp_path / "a" / "t_report.json").read_text(encoding="utf-8"))["datasets"]["t_train"]
    assert kept["rows_out"] == 3 and kept["duplicate_texts"] == {
        "count": 2,
        "conflicting_outputs": 1,
        "examples": [["train-1", "train-2"], ["train-1", "train-3"]],
    }
    code, out, _ = convert(capsys, "qa", tmp_path / "b", "--train", source, "--drop-duplicates")
    report = json.loads((tmp_path / "b" / "t_report.json").read_text(encoding="utf-8"))["datasets"]["t_train"]
    assert code == 0 and report["rows_out"] == 2 and report["duplicates_dropped"] == 1
    assert report["skipped_rows"] == [{"where": "id train-2", "reason": "duplicate of id train-1 (--drop-duplicates)"}]


# ---------------------------------------------------------------- report: tokens


def test_token_report_default_is_skipped_with_a_note(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no models/ here
    source = write_csv(tmp_path / "train.csv", JUDGE_ROWS, header=JUDGE_HEADER)
    assert main(["judge", "--train", str(source), "--name", "t"]) == 0
    report = json.loads((tmp_path / "data" / "t_report.json").read_text(encoding="utf-8"))
    # a Chinese task's own model first, then SmolLM2
    assert report["tokens"]["note"].startswith("skipped: no --tokenizer given and models/gemma3 or models/smollm2")
    assert "token lengths skipped" in capsys.readouterr().out


def test_token_report_defaults_to_the_task_model_then_smollm2(tmp_path, capsys, monkeypatch, tiny_model):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "smollm2").symlink_to(tiny_model)
    source = write_csv(tmp_path / "train.csv", JUDGE_ROWS, header=JUDGE_HEADER)
    assert main(["judge", "--train", str(source), "--name", "t"]) == 0  # no models/gemma3: SmolLM2's
    report = json.loads((tmp_path / "data" / "t_report.json").read_text(encoding="utf-8"))
    assert report["tokens"]["tokenizer"] == "models/smollm2"
    (tmp_path / "models" / "gemma3").symlink_to(tiny_model)
    assert main(["judge", "--train", str(source), "--name", "t"]) == 0
    report = json.loads((tmp_path / "data" / "t_report.json").read_text(encoding="utf-8"))
    assert report["tokens"]["tokenizer"] == "models/gemma3"


def test_token_report_with_a_tokenizer(tmp_path, capsys, tiny_model):
    rows = JUDGE_ROWS + [["TR9", "", "流畅性", "很长的一段话。" * 200, "2"]]
    source = write_csv(tmp_path / "train.csv", rows, header=JUDGE_HEADER)
    code = main(
        [
            "judge",
            "--train",
            str(source),
            "--name",
            "t",
            "--data-dir",
            str(tmp_path),
            "--tokenizer",
            str(tiny_model),
            "--cutoff-len",
            "256",
        ]
    )
    assert code == 0
    tokens = json.loads((tmp_path / "t_report.json").read_text(encoding="utf-8"))["datasets"]["t_train"]["tokens"]
    assert tokens["over_cutoff"] == 1 and tokens["cutoff_len"] == 256
    assert tokens["p50"] <= tokens["p95"] <= tokens["max"] and tokens["max"] > 256
    captured = capsys.readouterr()
    assert "t_train" in captured.out
    # 1 of the rows is over the cutoff: above 5%, so it is said on screen with what to do
    assert "rows of t_train" in captured.err and "longer than cutoff_len 256" in captured.err
    assert "--fit-cutoff" in captured.err


def test_every_task_is_registered():
    assert set(ADAPTERS) == {"judge", "cola", "qqp", "logic", "paper", "qa"}


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30), min_size=1, max_size=5)
)
def test_judge_csv_round_trips_any_content(tmp_path_factory, contents):
    tmp_path = tmp_path_factory.mktemp("prop")
    rows = [[f"ID{i}", "", "流畅性", text, "3"] for i, text in enumerate(contents)]
    source = write_csv(tmp_path / "train.csv", rows, header=JUDGE_HEADER)
    assert (
        main(["judge", "--train", str(source), "--name", "t", "--data-dir", str(tmp_path), "--tokenizer", "none"]) == 0
    )
    assert [r["input"] for r in load(tmp_path, "t_train")] == [text.strip() for text in contents]


def test_a_tokenizer_without_chat_template_reserves_room_for_the_template(tiny_model):
    from transformers import AutoTokenizer

    from adapters.report import NO_TEMPLATE_RESERVE, template_overhead

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert 0 < template_overhead(tokenizer, with_system=False) != NO_TEMPLATE_RESERVE  # its own template, counted
    tokenizer.chat_template = None  # as models/gemma3 (GGUF): LLaMA-Factory's `gemma` template adds 11 tokens
    assert template_overhead(tokenizer, with_system=False) == NO_TEMPLATE_RESERVE >= 11
