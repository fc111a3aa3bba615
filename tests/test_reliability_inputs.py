"""Issue #21, adapters: raw files that used to convert silently wrong (repeated columns, XLSX ids, dates, hidden
rows, the data on sheet 2, CR-only line ends) are read as the file shows them or refused naming file, row, column."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from helpers import JUDGE_HEADER, convert, load


def report(data_dir: Path, name: str = "t") -> dict:
    return json.loads((data_dir / f"{name}_report.json").read_text(encoding="utf-8"))


def workbook(path: Path, sheets: dict[str, list[list[object]]], hidden_rows: tuple[int, ...] = ()) -> Path:
    """An XLSX written by openpyxl: one sheet per entry, in order; `hidden_rows` hidden on the first sheet."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    for number in hidden_rows:
        book.worksheets[0].row_dimensions[number].hidden = True
    book.save(path)
    return path


# ---------------------------------------------------------------- repeated column names


def test_a_repeated_column_name_is_refused_naming_the_file_and_columns(tmp_path, capsys):
    source = tmp_path / "train.csv"
    source.write_text(
        "数据编号,创作要求,评判维度,待评判内容,标注分值, 标注分值 \nTR1,,流畅性,一句话。,5,1\n", encoding="utf-8"
    )
    code, out, err = convert(capsys, "judge", tmp_path / "d", "--train", source)
    assert code == 2 and out == ""
    assert "train.csv row 1 (header): column names repeated: 标注分值 (columns 5, 6)" in err, err
    assert not (tmp_path / "d").exists()


def test_a_repeated_column_in_an_xlsx_or_a_qqp_header_is_refused(tmp_path, capsys):
    source = workbook(
        tmp_path / "train.xlsx", {"s": [[*JUDGE_HEADER, "评判维度"], ["TR1", "", "流畅性", "话。", 5, "x"]]}
    )
    code, _, err = convert(capsys, "judge", tmp_path / "d", "--train", source)
    assert code == 2 and "train.xlsx row 1 (header): column names repeated: 评判维度 (columns 3, 6)" in err, err
    tsv = tmp_path / "q.tsv"
    tsv.write_bytes(b"id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\tid\n7\t1\t2\tHow?\tWhy?\t0\t8\n")
    code, _, err = convert(capsys, "qqp", tmp_path / "d", "--train", tsv)
    assert code == 2 and "q.tsv line 1 (header): column names repeated: id (columns 1, 7)" in err, err


def test_unnamed_trailing_columns_are_still_fine(tmp_path, capsys):
    source = tmp_path / "train.csv"
    source.write_text(",".join(JUDGE_HEADER) + ",,\nTR1,,流畅性,一句话。,5,,\n", encoding="utf-8")
    code, _, err = convert(capsys, "judge", tmp_path / "d", "--train", source)
    assert code == 0, err


# ---------------------------------------------------------------- XLSX cells


def test_xlsx_ids_are_kept_as_the_file_holds_them(tmp_path, capsys):
    rows = [
        JUDGE_HEADER,
        [123456789012345, "", "流畅性", "一句话。", 5],  # 15 digits: exact
        [datetime.datetime(2023, 1, 5), "", "流畅性", "一句话。", 4],  # a date-typed id
        [datetime.datetime(2023, 1, 5, 8, 30), "", "流畅性", "一句话。", 3],
        [1234567.0, "", "流畅性", "一句话。", 5.0],
        [1.23456789012345e17, "", "流畅性", "一句话。", 5],  # 15 significant digits, as Excel shows it
    ]
    code, _, err = convert(capsys, "judge", tmp_path / "d", "--test", workbook(tmp_path / "test.xlsx", {"s": rows}))
    assert code == 0, err
    ids = [record["id"] for record in load(tmp_path / "d", "t_test")]
    assert ids == ["123456789012345", "2023-01-05", "2023-01-05 08:30:00", "1234567", "123456789012345000"]


@pytest.mark.parametrize("number", [123456789012345678, 1.2345678901234568e17])
def test_an_id_number_beyond_15_digits_is_refused_naming_the_cell(tmp_path, capsys, number):
    """openpyxl stores 123456789012345678 as 1.234567890123457e+17 (read back: ...696), Excel as
    1.2345678901234568E+17: either way the digits after the 15th are not the ones typed."""
    rows = [JUDGE_HEADER, ["TR1", "", "流畅性", "话。", 5], [number, "", "流畅性", "话。", 4]]
    code, _, err = convert(capsys, "judge", tmp_path / "d", "--train", workbook(tmp_path / "train.xlsx", {"s": rows}))
    assert code == 2
    assert "train.xlsx row 3 column 数据编号 (A): the number " in err, err
    assert "has more than 15 significant digits" in err and "expected text" in err, err
    assert not (tmp_path / "d").exists()


def test_hidden_rows_are_counted_in_the_report_and_said(tmp_path, capsys):
    rows = [JUDGE_HEADER, *[[f"TR{i}", "", "流畅性", "话。", 4] for i in range(4)]]
    source = workbook(tmp_path / "train.xlsx", {"s": rows}, hidden_rows=(3, 5))
    code, out, err = convert(capsys, "judge", tmp_path / "d", "--train", source)
    assert code == 0, err
    assert len(load(tmp_path / "d", "t_train")) == 4  # kept: hidden is not deleted
    note = report(tmp_path / "d")["datasets"]["t_train"]["hidden_rows"]
    assert note.startswith("2 rows hidden in the sheet were read like the others (rows 3, 5)"), note
    assert "t_train hidden_rows: 2 rows hidden" in out, out


def test_data_on_the_second_sheet_says_which_sheet_was_read_and_names_the_others(tmp_path, capsys):
    sheets = {"说明": [["本表为评测数据，请见数据页"]], "数据": [JUDGE_HEADER, ["TR1", "", "流畅性", "话。", 5]]}
    code, _, err = convert(capsys, "judge", tmp_path / "d", "--train", workbook(tmp_path / "train.xlsx", sheets))
    assert code == 2
    assert "only a header row" in err
    assert "read the first sheet '说明', the workbook also has '数据': put the data sheet first" in err, err
    sheets = {"说明": [["说明"], ["本表为评测数据"]], "数据": [JUDGE_HEADER, ["TR1", "", "流畅性", "话。", 5]]}
    code, _, err = convert(capsys, "judge", tmp_path / "d", "--train", workbook(tmp_path / "train.xlsx", sheets))
    assert code == 2 and "missing column" in err and "the workbook also has '数据'" in err, err


def test_a_workbook_with_more_sheets_says_which_was_read(tmp_path, capsys):
    sheets = {"数据": [JUDGE_HEADER, ["TR1", "", "流畅性", "话。", 5]], "备注": [["x"]]}
    code, out, err = convert(capsys, "judge", tmp_path / "d", "--train", workbook(tmp_path / "train.xlsx", sheets))
    assert code == 0, err
    assert "t_train other_sheets: read the first sheet '数据'; not read: '备注'" in out, out


# ---------------------------------------------------------------- line ends


def test_a_tsv_with_cr_only_line_ends_is_read_and_said(tmp_path, capsys):
    text = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\r7\t1\t2\tHow?\tWhy?\t0\r9\t3\t4\tA?\tB?\t1\r"
    source = tmp_path / "train.tsv"
    source.write_bytes(text.encode())
    code, out, err = convert(capsys, "qqp", tmp_path / "d", "--train", source)
    assert code == 0, err
    assert [(r["id"], r["output"]) for r in load(tmp_path / "d", "t_train")] == [("7", "0"), ("9", "1")]
    assert "line_ends: CR only" in out, out
    cola = tmp_path / "cola.tsv"
    cola.write_bytes(b"gj04\t1\t\tGood.\rgj04\t0\t*\tBad one.")
    code, _, err = convert(capsys, "cola", tmp_path / "c", "--train", cola)
    assert code == 0, err
    assert [r["output"] for r in load(tmp_path / "c", "t_train")] == ["1", "0"]


def test_a_cr_only_jsonl_is_read(tmp_path, capsys):
    source = tmp_path / "train.jsonl"
    source.write_text('{"input": "q1", "output": "a1"}\r{"input": "q2", "output": "a2"}\r', encoding="utf-8")
    code, _, err = convert(capsys, "qa", tmp_path / "d", "--train", source)
    assert code == 0, err
    assert [r["output"] for r in load(tmp_path / "d", "t_train")] == ["a1", "a2"]


@pytest.mark.parametrize("ends", ["\n", "\r\n"])
def test_lf_and_crlf_tsv_say_nothing_about_line_ends(tmp_path, capsys, ends):
    source = tmp_path / "train.tsv"
    source.write_bytes(f"gj04\t1\t\tGood.{ends}gj04\t0\t*\tBad.\rstill one sentence.{ends}".encode())
    code, out, err = convert(capsys, "cola", tmp_path / "d", "--train", source)
    assert code == 0, err
    assert "line_ends" not in out
