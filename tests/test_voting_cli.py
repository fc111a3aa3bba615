"""`python -m voting` subcommands end to end: vote, self-consistency, report, submit, and bad input (exit 2, a
message naming the files and ids, no output file)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from voting.cli import main

ROOT = Path(__file__).resolve().parents[1]
JUDGE_HEADER = "数据编号,评判维度,预测分数"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def run(argv, capsys) -> tuple[int, dict | None, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def read_csv(path: Path, encoding: str = "utf-8") -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding=encoding))))


@pytest.fixture
def judge_files(tmp_path) -> list[Path]:
    """Four models' raw judge outputs covering every branch; glm4 is the tie-breaker."""
    dims = ["流畅性", "规范性", "流畅性", "流畅性", "选择题", "规范性"]
    rows = {
        #          4-0      2-2          1-1-1-1  3-1     选择题  tb unparsed, 2-1
        "glm4": ["4", "Score: 3", "1", "2", "1", "无法判断"],
        "qwen2": ["4", "3", "2", "5", "0", "5"],
        "internlm2_5": ["4", "答案是2", "3", "5", "0", "5"],
        "gemma2": ["4", "2", "4", "5", "0", "4"],
    }
    paths = []
    for name, predictions in rows.items():
        text = "id,prediction,dimension\n" + "".join(
            f"TE{i},{p},{d}\n" for i, (p, d) in enumerate(zip(predictions, dims, strict=True))
        )
        paths.append(write(tmp_path / f"{name}.csv", text))
    return paths


def test_vote_subprocess_judge(judge_files, tmp_path):
    out = tmp_path / "voted" / "judge.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voting",
            "vote",
            *map(str, judge_files),
            "--task",
            "judge",
            "--tie-breaker",
            "glm4",
            "--out",
            str(out),
            "--max-unparsed",
            "20%",
        ],  # 选择题 → glm4: the task's own rule
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["decided_by"]["tie_breaker"] == 2 and summary["decided_by"]["tie_breaker_only"] == 1
    assert summary["unparsed"]["glm4"] == 1
    assert "glm4.csv: 1 of 6 predictions unparsed or outside the labels, they abstain (ids TE5)" in proc.stderr
    rows = read_csv(out)
    assert [r["prediction"] for r in rows] == ["4", "3", "1", "5", "1", "5"]
    assert [r["decided_by"] for r in rows] == [
        "majority",
        "tie_breaker",
        "tie_breaker",
        "majority",
        "tie_breaker_only",
        "majority",
    ]
    assert rows[0]["dimension"] == "流畅性"  # carried through from the tie-breaker's file


def test_vote_groups_file_and_weights(judge_files, tmp_path, capsys):
    groups = write(
        tmp_path / "groups.csv",
        "id,dimension\n" + "".join(f"TE{i},{'选择题' if i == 4 else '流畅性'}\n" for i in range(6)),
    )
    out = tmp_path / "voted.csv"
    code, summary, _ = run(
        [
            "vote",
            *judge_files,
            "--task",
            "judge",
            "--tie-breaker",
            "glm4",
            "--groups",
            groups,
            "--weights",
            "gemma2=3",
            "--max-unparsed",
            "20%",
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0
    # gemma2 weighs 3: it outvotes a pair (rows 1 and 5) and beats the singles (row 2); row 4 is tie-breaker-only
    assert [r["prediction"] for r in read_csv(out)] == ["4", "2", "4", "5", "1", "4"]


def test_vote_soft(tmp_path, capsys):
    a = write(tmp_path / "a.csv", "id,prediction,prob_0,prob_1\n1,0,0.6,0.4\n2,1,0.4,0.6\n")
    b = write(tmp_path / "b.csv", "id,prediction,prob_0,prob_1\n1,1,0.1,0.9\n2,0,0.6,0.4\n")
    out = tmp_path / "soft.csv"
    code, summary, _ = run(["vote", a, b, "--task", "cola", "--tie-breaker", "a", "--soft", "--out", out], capsys)
    assert code == 0
    assert [r["prediction"] for r in read_csv(out)] == ["1", "1"]  # row 2 ties at 0.5: the tie-breaker's 1
    assert summary["decided_by"]["tie_breaker"] == 1


def test_vote_unparsed_row_needs_an_explicit_fallback(tmp_path, capsys):
    a = write(tmp_path / "a.csv", "id,prediction\n1,B\n2,??\n")
    b = write(tmp_path / "b.csv", "id,prediction\n1,B\n2,no idea\n")
    out = tmp_path / "v.csv"
    code, _, err = run(["vote", a, b, "--task", "logic", "--tie-breaker", "a", "--out", out], capsys)
    assert code == 2 and "too many predictions abstain" in err and "a 1 of 2, b 1 of 2" in err  # above 5%
    code, _, err = run(
        ["vote", a, b, "--task", "logic", "--tie-breaker", "a", "--max-unparsed", "50%", "--out", out], capsys
    )
    assert code == 2 and "no model's text parsed on 1 rows, ids 2" in err and "--unparsed" in err
    assert not out.exists()
    code, summary, _ = run(
        [
            "vote",
            a,
            b,
            "--task",
            "logic",
            "--tie-breaker",
            "a",
            "--unparsed",
            "A",
            "--out",
            out,
            "--max-unparsed",
            "0.5",
        ],
        capsys,
    )
    assert code == 0 and summary["decided_by"]["unparsed"] == 1
    assert [r["decided_by"] for r in read_csv(out)] == ["majority", "unparsed"]


@pytest.mark.parametrize(
    ("b_text", "extra", "message"),
    [
        ("id,prediction\n1,A\n2,G\n", [], "too many predictions abstain (unparsed or outside the labels): b 1 of 2"),
        ("id,prediction\n1,A\n3,B\n", [], "have different ids: 1 ids only in {a} (2); 1 ids only in {b} (3)"),
        ("id,prediction\n1,A\n1,B\n2,C\n", [], "{b}: duplicate ids 1"),
        ("", [], "{b}: empty file"),
        ("id,prediction\n1,A\n2,B\n", ["--tie-breaker", "glm4"], "--tie-breaker glm4 matches no file"),
        ("id,prediction\n1,A\n2,B\n", ["--weights", "c=2"], "--weights c=2"),
        ("id,prediction\n1,A\n2,B\n", ["--soft"], "--soft needs prob_<label> columns"),
        ("id,prediction\n1,A\n2,B\n", ["--tie-breaker-only", "x"], "--tie-breaker-only: task logic has no groups"),
    ],
)
def test_vote_bad_input(tmp_path, capsys, b_text, extra, message):
    a = write(tmp_path / "a.csv", "id,prediction\n1,A\n2,B\n")
    b = write(tmp_path / "b.csv", b_text)
    out = tmp_path / "out.csv"
    argv = ["vote", a, b, "--task", "logic", "--out", out, *extra]
    if "--tie-breaker" not in extra:
        argv += ["--tie-breaker", "a"]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert message.format(a=a, b=b) in err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.csv*"))


def test_bad_input_subprocess_exit_2_without_traceback(tmp_path):
    a = write(tmp_path / "a.csv", "id,prediction\n1,A\n1,B\n")
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "voting", "vote", str(a), "--tie-breaker", "a", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {a}: duplicate ids 1") and "Traceback" not in proc.stderr
    assert not out.exists()


def test_self_consistency(tmp_path, capsys):
    samples = write(
        tmp_path / "samples.csv",
        "id,prediction,sample\n"
        "p#0,答案是A,1\np#0,B,0\np#0,A,2\np#0,B,3\np#0,C,4\n"  # A 2, B 2: B is first in sample order
        "p#1,D,0\np#1,D,1\np#1,乱码,2\n",
    )
    out = tmp_path / "sc.csv"
    code, summary, err = run(["self-consistency", samples, "--task", "logic", "--out", out], capsys)
    assert code == 0
    rows = read_csv(out)
    assert [(r["id"], r["prediction"], r["votes"], r["samples"], r["tied"]) for r in rows] == [
        ("p#0", "B", "2", "5", "True"),
        ("p#1", "D", "2", "2", "False"),
    ]
    assert summary["unparsed_samples"] == 1 and summary["ties"] == 1 and "1 of 8 samples unparsed" in err
    bad = write(tmp_path / "bad.csv", "id,prediction\nq,??\nq,!!\n")
    code, _, err = run(["self-consistency", bad, "--task", "logic", "--out", tmp_path / "x.csv"], capsys)
    assert code == 2 and "no sample parsed for 1 ids (q)" in err
    assert not (tmp_path / "x.csv").exists()


def test_report(judge_files, tmp_path, capsys):
    gold = write(tmp_path / "gold.csv", "id,label\nTE0,4\nTE1,3\nTE2,2\nTE3,5\nTE4,1\nTE5,4\n")
    out = tmp_path / "report"
    code, summary, _ = run(
        [
            "report",
            *judge_files,
            "--gold",
            gold,
            "--out",
            out,
            "--task",
            "judge",
            "--tie-breaker",
            "glm4",
            "--max-unparsed",
            "20%",
        ],
        capsys,
    )
    assert code == 0
    assert summary["tie_breaker_decided"]["rows"] == 3
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(report["scores"]) == {"glm4", "qwen2", "internlm2_5", "gemma2", "ensemble"}
    assert report["scores"]["ensemble"]["accuracy"] == pytest.approx(4 / 6)
    assert report["agreement"]["matrix"][0][0] == 1.0
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| **ensemble** |" in markdown and "Pairwise agreement" in markdown and "tie-breaker decided 3" in markdown
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"


# ---- submissions ----------------------------------------------------------------------------------------------


def judge_test(tmp_path) -> Path:
    records = [
        {"id": f"TE{i}", "instruction": "", "input": "x", "output": "", "dimension": d}
        for i, d in enumerate(["流畅性", "规范性", "选择题"])
    ]
    return write(tmp_path / "judge_test.json", json.dumps(records, ensure_ascii=False))


def test_submit_judge_gb18030_in_test_order(tmp_path, capsys):
    pred = write(tmp_path / "voted.csv", "id,prediction\nTE2,1\nTE0,评分：4\nTE1,5\n")
    code, summary, _ = run(
        ["submit", "judge", "--pred", pred, "--test", judge_test(tmp_path), "--out", tmp_path / "sub/"], capsys
    )
    assert code == 0 and summary["out"] == str(tmp_path / "sub" / "submit.csv")
    data = (tmp_path / "sub" / "submit.csv").read_bytes()
    assert data.decode("gb18030") == f"{JUDGE_HEADER}\nTE0,流畅性,4\nTE1,规范性,5\nTE2,选择题,1\n"


@pytest.mark.shared
def test_submit_judge_header_matches_the_official_example(shared_data, tmp_path, capsys):
    example = (shared_data / "df1032" / "提交示例.csv").read_bytes()
    pred = write(tmp_path / "voted.csv", "id,prediction\nTE0,4\nTE1,5\nTE2,0\n")
    out = tmp_path / "submit.csv"
    assert run(["submit", "judge", "--pred", pred, "--test", judge_test(tmp_path), "--out", out], capsys)[0] == 0
    ours = out.read_bytes()
    assert ours.split(b"\n")[0] == example.split(b"\n")[0]  # same header, same GB18030 bytes
    assert ours.decode("gb18030").splitlines()[0] == JUDGE_HEADER


def test_submit_judge_rejects_a_score_outside_the_dimension(tmp_path, capsys):
    pred = write(tmp_path / "voted.csv", "id,prediction\nTE0,4\nTE1,5\nTE2,3\n")
    out = tmp_path / "submit.csv"
    code, _, err = run(["submit", "judge", "--pred", pred, "--test", judge_test(tmp_path), "--out", out], capsys)
    assert code == 2 and "id TE2" in err and "expected a judge label (0, 1 for 选择题)" in err
    assert not out.exists()


def test_submit_missing_ids_named(tmp_path, capsys):
    pred = write(tmp_path / "voted.csv", "id,prediction\nTE0,4\n")
    out = tmp_path / "submit.csv"
    code, _, err = run(["submit", "judge", "--pred", pred, "--test", judge_test(tmp_path), "--out", out], capsys)
    assert code == 2 and "2 ids of the test file have no prediction: TE1, TE2" in err
    assert not out.exists()


def test_submit_cola_with_seed_score(tmp_path, capsys):
    records = [{"id": f"dev-{i}", "instruction": "", "input": "s", "output": o} for i, o in enumerate("1101")]
    test = write(tmp_path / "cola_dev.json", json.dumps(records))
    pred = write(tmp_path / "voted.csv", "id,prediction\ndev-0,yes\ndev-1,1\ndev-2,0\ndev-3,0\n")
    code, summary, _ = run(["submit", "cola", "--pred", pred, "--test", test, "--out", tmp_path], capsys)
    assert code == 0
    assert (tmp_path / "result_CoLA.txt").read_text() == "1\n1\n0\n0\n"
    assert summary["accuracy"] == 0.75 and summary["seed_score"] == pytest.approx(52.5)


def test_submit_qqp_without_labels(tmp_path, capsys):
    records = [{"id": str(i), "instruction": "", "input": "q", "output": ""} for i in range(2)]
    test = write(tmp_path / "qqp_test.json", json.dumps(records))
    pred = write(tmp_path / "voted.csv", "id,prediction\n1,duplicate\n0,0\n")
    code, summary, _ = run(["submit", "qqp", "--pred", pred, "--test", test, "--out", tmp_path / "out"], capsys)
    assert code == 0 and summary["seed_score"] is None
    assert (tmp_path / "out" / "result_QQP.txt").read_text() == "0\n1\n"


def test_submit_logic_fills_answers(tmp_path, capsys):
    source = write(
        tmp_path / "round1_test_data.jsonl",
        "".join(
            json.dumps(p, ensure_ascii=False) + "\n"
            for p in [
                {
                    "problem": "p0",
                    "questions": [
                        {"question": "q", "options": ["x", "y"]},
                        {"question": "q", "options": ["x", "y", "z"]},
                    ],
                    "id": "round1_test_data_000",
                },
                {
                    "problem": "p1",
                    "questions": [{"question": "q", "options": ["x", "y"]}],
                    "id": "round1_test_data_001",
                },
            ]
        ),
    )
    ids = ["round1_test_data_000#0", "round1_test_data_000#1", "round1_test_data_001#0"]
    test = write(
        tmp_path / "logic_test.json", json.dumps([{"id": i, "instruction": "", "input": "", "output": ""} for i in ids])
    )
    pred = write(
        tmp_path / "voted.csv", "id,prediction\n" + "".join(f"{i},答案是{a}\n" for i, a in zip(ids, "BCA", strict=True))
    )
    out = tmp_path / "upload.jsonl"
    code, _, err = run(["submit", "logic", "--pred", pred, "--test", test, "--out", out], capsys)
    assert code == 2 and "--source" in err
    code, summary, _ = run(
        ["submit", "logic", "--pred", pred, "--test", test, "--out", out, "--source", source], capsys
    )
    assert code == 0 and summary["questions"] == 3
    problems = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [[q["answer"] for q in p["questions"]] for p in problems] == [["B", "C"], ["A"]]
    assert problems[0]["problem"] == "p0"
    bad = write(tmp_path / "bad.csv", "id,prediction\n" + "".join(f"{i},C\n" for i in ids))
    code, _, err = run(
        ["submit", "logic", "--pred", bad, "--test", test, "--out", tmp_path / "b.jsonl", "--source", source], capsys
    )
    assert code == 2 and "id round1_test_data_000#0: answer 'C' but the question has 2 options" in err


def test_submit_paper_and_qa(tmp_path, capsys):
    test = write(
        tmp_path / "paper_test.json",
        json.dumps([{"id": str(i), "instruction": "", "input": "abstract", "output": ""} for i in range(2)]),
    )
    labels = write(tmp_path / "cls.csv", "id,prediction\n0,1\n1,否\n")
    keywords = write(tmp_path / "kw.csv", 'id,prediction\n0,"ROS; HDACi,\n Leukemia"\n1,graphs\n')
    out = tmp_path / "paper.csv"
    code, _, _ = run(
        ["submit", "paper", "--pred", labels, "--keywords", keywords, "--test", test, "--out", out], capsys
    )
    assert code == 0
    assert read_csv(out) == [
        {"uuid": "0", "Keywords": "ROS; HDACi, Leukemia", "label": "1"},
        {"uuid": "1", "Keywords": "graphs", "label": "0"},
    ]
    qa_test = write(
        tmp_path / "qa_test.json",
        json.dumps([{"id": "q1", "instruction": "首都?", "input": "", "output": ""}], ensure_ascii=False),
    )
    answers = write(tmp_path / "qa.csv", "id,prediction\nq1, 北京 \n")
    code, summary, _ = run(["submit", "qa", "--pred", answers, "--test", qa_test, "--out", tmp_path / "qa"], capsys)
    assert code == 0
    line = json.loads((tmp_path / "qa" / "answers.jsonl").read_text(encoding="utf-8"))
    assert line == {"id": "q1", "instruction": "首都?", "input": "", "answer": "北京"}


def test_default_tie_breaker_glm4_else_the_best_on_labelled_rows_else_asked(tmp_path, capsys):
    gold = write(
        tmp_path / "dev.json",
        json.dumps([{"id": "1", "output": "A"}, {"id": "2", "output": "B"}, {"id": "3", "output": ""}]),
    )  # row 3 unlabelled
    a = write(tmp_path / "a.csv", "id,prediction\n1,B\n2,A\n3,A\n")  # 0 of 2 right
    b = write(tmp_path / "b.csv", "id,prediction\n1,A\n2,B\n3,B\n")  # 2 of 2 right
    out = tmp_path / "v.csv"
    code, summary, _ = run(["vote", a, b, "--task", "logic", "--gold", gold, "--out", out], capsys)
    assert code == 0 and summary["tie_breaker"] == "b" and "2 labelled rows" in summary["tie_breaker_why"]
    glm4 = write(tmp_path / "glm4.csv", "id,prediction\n1,C\n2,C\n3,C\n")
    code, summary, _ = run(["vote", a, b, glm4, "--task", "logic", "--gold", gold, "--out", out], capsys)
    assert code == 0 and summary["tie_breaker"] == "glm4"
    code, _, err = run(["vote", a, b, "--task", "logic", "--out", out], capsys)
    assert code == 2 and "give --tie-breaker NAME (make: TIE=NAME), one of a, b" in err


def test_unparsed_fill_must_be_a_label_of_the_filled_rows_group(tmp_path, capsys):
    """Judge: UNPARSED=3 fills a 选择题 row (0/1) with a score: refused, naming the group and its labels; 1 is a
    label of every dimension and fills it."""
    rows = "id,prediction,dimension\n1,4,流畅性\n2,??,选择题\n3,5,规范性\n"
    a = write(tmp_path / "glm4.csv", rows)
    b = write(tmp_path / "qwen2.csv", rows.replace("1,4,", "1,3,"))
    out = tmp_path / "v.csv"
    common = ["vote", a, b, "--task", "judge", "--max-unparsed", "50%", "--out", out]
    code, _, err = run([*common, "--unparsed", "3"], capsys)
    assert code == 2 and "1 dimension 选择题 rows (labels 0, 1)" in err and "UNPARSED=" in err, err
    assert not out.exists()
    code, summary, _ = run([*common, "--unparsed", "1"], capsys)
    assert code == 0 and read_csv(out)[1]["prediction"] == "1"
