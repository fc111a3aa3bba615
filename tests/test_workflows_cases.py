"""Issue #22, cases 6, 7, 8, 9 and 11: hold-out splits (QA, judge), a paper file without labels, empty free-text
answers, a failed logic submit, and the docs' commands that rely on them. Each test failed before its fix."""

from __future__ import annotations

import csv
import json
import re
import shlex
from collections import Counter
from pathlib import Path

import pytest

from adapters.cli import main as adapters_main
from voting.cli import main as voting_main

ROOT = Path(__file__).resolve().parents[1]


def convert(capsys, adapter: str, data_dir: Path, *args: object, name: str = "t") -> tuple[int, str, str]:
    code = adapters_main([adapter, *map(str, args), "--name", name, "--data-dir", str(data_dir), "--tokenizer", "none"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def vote_cli(argv: list[object], capsys) -> tuple[int, dict | None, str]:
    code = voting_main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else None, captured.err


def load(data_dir: Path, dataset: str) -> list[dict]:
    return json.loads((data_dir / f"{dataset}.json").read_text(encoding="utf-8"))


def report_of(data_dir: Path, name: str = "t") -> dict:
    return json.loads((data_dir / f"{name}_report.json").read_text(encoding="utf-8"))["datasets"]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def question(record: dict) -> str:
    return " ".join(f"{record['instruction']}\n{record['input']}".split())


# ---------------------------------------------------------------- 6. QA hold-out


def qa_file(path: Path) -> Path:
    """40 rows: 10 questions asked three times (other answers), 10 asked once."""
    rows = [{"input": f"重复的问题 {q}？", "output": f"答案 {q}-{k}"} for q in range(10) for k in range(3)]
    rows += [{"input": f"只问一次 {q}？", "output": f"答 {q}"} for q in range(10)]
    return write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def test_qa_dev_share_keeps_repeated_questions_on_one_side(tmp_path, capsys):
    source = qa_file(tmp_path / "qa.jsonl")
    code, out, err = convert(capsys, "qa", tmp_path / "d", "--train", source, "--dev-share", "0.25", "--seed", "3")
    assert code == 0, err
    train, dev = load(tmp_path / "d", "t_train"), load(tmp_path / "d", "t_dev")
    assert len(train) + len(dev) == 40 and 8 <= len(dev) <= 12
    assert not {question(r) for r in train} & {question(r) for r in dev}
    assert all(count == 3 for q, count in Counter(map(question, dev)).items() if q.startswith("重复"))
    report = report_of(tmp_path / "d")
    assert "seed 3" in report["t_train"]["held_out"]
    assert "10 questions asked more than once (30 records)" in report["t_train"]["held_out"]
    assert "held_out_from" in report["t_dev"] and "t_dev held_out_from" in out
    # seeded: the same split again; another seed, another split
    assert convert(capsys, "qa", tmp_path / "e", "--train", source, "--dev-share", "25%", "--seed", "3")[0] == 0
    assert load(tmp_path / "e", "t_dev") == dev
    assert convert(capsys, "qa", tmp_path / "f", "--train", source, "--dev-share", "0.25", "--seed", "4")[0] == 0
    assert load(tmp_path / "f", "t_dev") != dev


def test_qa_dev_share_refuses_a_dev_file_too_and_a_bad_share(tmp_path, capsys):
    source = qa_file(tmp_path / "qa.jsonl")
    code, _, err = convert(capsys, "qa", tmp_path / "d", "--train", source, "--dev", source, "--dev-share", "0.1")
    assert code == 2 and "--dev-share" in err and "give one of them" in err and not (tmp_path / "d").exists()
    code, _, err = convert(capsys, "qa", tmp_path / "d", "--test", source, "--dev-share", "0.1")
    assert code == 2 and "give --train FILE" in err
    with pytest.raises(SystemExit):
        convert(capsys, "qa", tmp_path / "d", "--train", source, "--dev-share", "1.5")


def test_qa_dev_share_on_the_real_gongkao_file(shared_data, tmp_path, capsys):
    source = shared_data / "gongkao" / "output.jsonl"
    code, _, err = convert(capsys, "qa", tmp_path / "d", "--train", source, "--dev-share", "0.1", "--drop-duplicates")
    assert code == 0, err
    train, dev = load(tmp_path / "d", "t_train"), load(tmp_path / "d", "t_dev")
    assert 1000 <= len(dev) <= 1080 and not {question(r) for r in train} & {question(r) for r in dev}


# ---------------------------------------------------------------- 7. paper without labels


def test_paper_file_without_label_says_so_and_how_to_score_with_the_base_model(tmp_path, capsys):
    header = "uuid,title,author,abstract,Keywords\n"
    train = write(tmp_path / "a.csv", header + "1,Heart,A,We studied hearts.,heart; study\n")
    test = write(tmp_path / "b.csv", "uuid,title,author,abstract\n9,T,A,Abs\n")
    code, out, err = convert(capsys, "paper", tmp_path / "d", "--train", train, "--test", test, name="paper")
    assert code == 0, err
    assert not (tmp_path / "d" / "paper_cls_train.json").exists()
    note = report_of(tmp_path / "d", "paper")["paper_kw_train"]["no_labels"]
    assert "has no label column, so no paper_cls_train is written" in note
    assert "make predict TASK=paper_cls MODE=score ARGS=adapter_name_or_path=" in note and note in out


def test_readme_paper_block_says_how_to_score_without_labels():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("# 3. iFLYTEK papers") : readme.index("# 4. QA assistant")]
    assert "without a label column" in block and "ARGS=adapter_name_or_path=" in block
    assert len(readme.splitlines()) <= 160


# ---------------------------------------------------------------- 8. empty free-text answers


def test_an_empty_qa_answer_is_an_answer_in_the_report(tmp_path, capsys):
    gold = write(tmp_path / "gold.csv", "id,label\nq1,北京\nq2,上海\nq3,广州\nq4,深圳\n")
    pred = write(tmp_path / "m.csv", "id,prediction\nq1,北京\nq2,\nq3,广州\nq4,深圳\n")
    out = tmp_path / "report"
    code, _, err = vote_cli(
        ["report", pred, "--gold", gold, "--task", "qa", "--tie-breaker", "m", "--out", out], capsys
    )
    assert code == 0, err  # before: 1 of 4 "unparsed" > 5%, the report refused
    scores = json.loads((out / "report.json").read_text(encoding="utf-8"))["scores"]["m"]
    assert scores["empty"] == 1 and scores["unparsed"] == 0 and scores["exact_match"] == 0.75
    with (out / "rows.csv").open(encoding="utf-8", newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert rows["q2"]["prediction"] == "" and float(rows["q2"]["rouge_l"]) == 0.0
    assert "1 of 4 answers are empty, they score 0" in err
    code, result, _ = vote_cli(["metrics", "--pred", pred, "--gold", gold, "--task", "qa"], capsys)
    assert code == 0 and result["empty"] == 1 and result["unparsed"] == 0


def test_empty_gold_answers_are_still_refused(tmp_path, capsys):
    gold = write(tmp_path / "gold.csv", "id,label\nq1,北京\nq2,\n")
    pred = write(tmp_path / "m.csv", "id,prediction\nq1,北京\nq2,上海\n")
    code, _, err = vote_cli(["metrics", "--pred", pred, "--gold", gold, "--task", "qa"], capsys)
    assert code == 2 and "expected a non-empty answer" in err


def test_submit_paper_and_qa_count_empty_answers(tmp_path, capsys):
    test = write(
        tmp_path / "paper_test.json",
        json.dumps([{"id": str(i), "instruction": "", "input": "abstract", "output": ""} for i in range(3)]),
    )
    labels = write(tmp_path / "cls.csv", "id,prediction\n0,1\n1,0\n2,0\n")
    keywords = write(tmp_path / "kw.csv", "id,prediction\n0,ROS; HDACi\n1,\n2,graphs\n")
    args = ["submit", "--task", "paper", "--pred", labels, "--keywords", keywords, "--test", test]
    code, summary, err = vote_cli([*args, "--out", tmp_path / "paper.csv"], capsys)
    assert code == 0 and summary["empty_keywords"] == 1
    assert "1 of 3 papers have empty Keywords" in err
    qa_test = write(
        tmp_path / "qa_test.json",
        json.dumps([{"id": f"q{i}", "instruction": "首都?", "input": "", "output": ""} for i in (1, 2)]),
    )
    answers = write(tmp_path / "qa.csv", "id,prediction\nq1,北京\nq2,\n")
    code, _, err = vote_cli(["submit", "--task", "qa", "--pred", answers, "--test", qa_test, "--out", tmp_path], capsys)
    assert code == 0 and "1 of 2 answers are empty and written empty" in err
    lines = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["answer"] for line in lines] == ["北京", ""]


# ---------------------------------------------------------------- 9. logic: a failed submit, its messages, the README


def logic_files(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    problems = [
        {"problem": "p0", "questions": [{"question": "q", "options": ["x", "y"]}], "id": "r0"},
        {"problem": "p1", "questions": [{"question": "q", "options": ["x", "y", "z"]}], "id": "r1"},
    ]
    source = write(tmp_path / "round1_test_data.jsonl", "".join(json.dumps(p) + "\n" for p in problems))
    ids = ["r0#0", "r1#0"]
    test = write(
        tmp_path / "logic_test.json", json.dumps([{"id": i, "instruction": "", "input": "", "output": ""} for i in ids])
    )
    return source, test, ids


def test_a_failed_logic_submit_leaves_no_earlier_upload_looking_current(tmp_path, capsys):
    source, test, ids = logic_files(tmp_path)
    out = tmp_path / "submissions"
    good = write(tmp_path / "a.csv", "id,prediction\nr0#0,A\nr1#0,C\n")
    base = ["submit", "--task", "logic", "--test", test, "--source", source, "--out", f"{out}/"]
    code, _, err = vote_cli([*base, "--pred", good], capsys)
    assert code == 0, err
    assert (out / "upload.jsonl").exists() and (out / "answer.txt").read_text() == "A\nC\n"
    missing = write(tmp_path / "b.csv", "id,prediction\nr0#0,B\n")  # another model's file, one id short
    code, _, err = vote_cli([*base, "--pred", missing], capsys)
    assert code == 2 and "have no prediction" in err
    assert not (out / "upload.jsonl").exists() and not (out / "answer.txt").exists()
    assert "removed" in err and "upload.jsonl" in err and "answer.txt" in err
    # a pipeline that fails before its submit step (sc-submit's self-consistency) clears them first: submit --clear
    assert vote_cli([*base, "--pred", good], capsys)[0] == 0
    code, summary, _ = vote_cli(["submit", "--task", "logic", "--out", f"{out}/", "--clear"], capsys)
    assert code == 0 and sorted(Path(p).name for p in summary["removed"]) == ["answer.txt", "upload.jsonl"]
    assert not list(out.iterdir())


def test_unparsed_messages_name_the_make_variable(tmp_path, capsys):
    samples = write(tmp_path / "m_samples.csv", "id,prediction,sample\nr0#0,不知道,0\nr0#0,也许,1\n")
    code, _, err = vote_cli(["self-consistency", samples, "--task", "logic", "--out", tmp_path / "voted.csv"], capsys)
    assert code == 2 and "--unparsed LABEL; UNPARSED= in make" in err
    a = write(tmp_path / "a.csv", "id,prediction\n1,不知道\n2,A\n")
    code, _, err = vote_cli(
        ["vote", a, "--task", "logic", "--tie-breaker", "a", "--max-unparsed", "100%", "--out", tmp_path / "v.csv"],
        capsys,
    )
    assert code == 2 and "--unparsed LABEL; UNPARSED= in make" in err
    code, _, err = vote_cli(
        ["vote", a, "--task", "logic", "--tie-breaker", "a", "--unparsed", "Z", "--max-unparsed", "1"]
        + ["--out", tmp_path / "v.csv"],
        capsys,
    )
    assert code == 2 and "--unparsed Z (UNPARSED= in make)" in err


def test_readme_logic_one_line_form_sends_the_servers_key():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line for line in readme.splitlines() if "make sc-submit" in line and "TASK=logic" in line]
    assert lines and all(line.startswith("API_KEY=EMPTY make sc-submit") for line in lines)


# ---------------------------------------------------------------- 11. judge hold-out and the docs' report line

JUDGE_HEADER = "数据编号,创作要求,评判维度,待评判内容,标注分值\n"


def judge_train(path: Path) -> Path:
    """200 rows: 100 流畅性 (scores 1–5 as 10/20/40/20/10), 60 规范性 (3: 30, 4: 30), 40 选择题 (0: 10, 1: 30)."""
    cells = [("流畅性", s, n) for s, n in zip("12345", (10, 20, 40, 20, 10), strict=True)]
    cells += [("规范性", "3", 30), ("规范性", "4", 30), ("选择题", "0", 10), ("选择题", "1", 30)]
    rows = [
        f"TR{len(cells) * 1000 + k}-{dimension}{score},要求,{dimension},内容 {dimension} {score} {k},{score}\n"
        for dimension, score, n in cells
        for k in range(n)
    ]
    return write(path, JUDGE_HEADER + "".join(rows), "gb18030")


def test_judge_dev_share_is_stratified_within_each_dimension(tmp_path, capsys):
    source = judge_train(tmp_path / "train.csv")
    code, out, err = convert(capsys, "judge", tmp_path / "d", "--train", source, "--dev-share", "0.1")
    assert code == 0, err
    train, dev = load(tmp_path / "d", "t_train"), load(tmp_path / "d", "t_dev")
    assert len(dev) == 20 and len(train) == 180 and not {r["id"] for r in train} & {r["id"] for r in dev}
    cells = Counter((r["dimension"], r["output"]) for r in dev)
    assert cells == {
        ("流畅性", "1"): 1,
        ("流畅性", "2"): 2,
        ("流畅性", "3"): 4,
        ("流畅性", "4"): 2,
        ("流畅性", "5"): 1,
        ("规范性", "3"): 3,
        ("规范性", "4"): 3,
        ("选择题", "0"): 1,
        ("选择题", "1"): 3,
    }
    assert "stratified by dimension and score" in report_of(tmp_path / "d")["t_train"]["held_out"]
    assert json.loads((tmp_path / "d" / "dataset_info.json").read_text(encoding="utf-8"))["t_dev"]["task"] == "judge"


def make_vars(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(line.split("#", 1)[0]) if "=" in word)


def test_the_docs_judge_block_writes_the_gold_its_report_line_reads(shared_data, tmp_path, capsys):
    """docs/workflows.md: the `make data` line, converted as the Makefile's data target does, writes the file the
    `make report` line scores against (GOLD=, else data/TASK_SPLIT.json)."""
    docs = (ROOT / "docs" / "workflows.md").read_text(encoding="utf-8")
    block = re.search(r"## The text-judging pipeline.*?```bash\n(.*?)```", docs, re.S).group(1).splitlines()
    data = make_vars(next(line for line in block if line.startswith("make data ")))
    report = make_vars(next(line for line in block if line.startswith("make report ")))

    def real(path: str) -> Path:  # the docs name the files as seen from the project root: ../shared/data/...
        return shared_data / path.removeprefix("../shared/data/") if path.startswith("../shared/data/") else ROOT / path

    args = ["--train", real(data["TRAIN"]), "--test", real(data["TEST"]), *shlex.split(data.get("DATA_ARGS", ""))]
    # the Makefile's spelling: ADAPTER= the format (default TASK), TASK= the dataset (NAME=, the old spelling, wins)
    adapter, name = data.get("ADAPTER", data["TASK"]), data.get("NAME", data["TASK"])
    code, _, err = convert(capsys, adapter, tmp_path / "data", *args, name=name)
    assert code == 0, err
    gold = report.get("GOLD", f"data/{report['TASK']}_{report.get('SPLIT', 'test')}.json")
    assert gold.startswith("data/") and (tmp_path / gold).is_file()
    assert {r["output"] for r in load(tmp_path / "data", Path(gold).stem)} <= set("12345")
