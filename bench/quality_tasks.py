"""bench/quality.py's held-out splits of the real competition files, converted by the real adapters, and the
baselines that need no model. Each `convert_*` writes the split as files in the competition's own format to a
temporary folder, runs `python -m adapters` on them, and returns a `Split`.

- logic: `logic/round1_train_data.jsonl`, split by problem (a problem's questions never straddle train and test).
- qa: `gongkao/output.jsonl`, repeated questions dropped first (the first answer kept).
- keywords: `iflytek/test.csv` (the A-board file, the one with a Keywords column) → NAME_kw_{train,test}.
"""

from __future__ import annotations

import contextlib
import csv
import json
import random
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from predict import COLA

from core.metrics import keyword_set

SHARED = COLA.parent
LOGIC = SHARED / "logic" / "round1_train_data.jsonl"
GONGKAO = SHARED / "gongkao" / "output.jsonl"
IFLYTEK = SHARED / "iflytek" / "test.csv"
SOURCES = {"logic": LOGIC, "qa": GONGKAO, "keywords": IFLYTEK}


@dataclass
class Split:
    """What the bench trains on and scores: `task` is the pipeline's --task (the datasets TASK_train/TASK_test)."""

    task: str
    train: list[dict]
    test: list[dict]
    calibrate_on: str | None = None  # label scoring's calibration dataset
    notes: dict = field(default_factory=dict)  # what the JSON line should say about the data


def adapters(*argv: str) -> None:
    from adapters.cli import main as adapters_main

    tokenizer = [] if "--tokenizer" in argv else ["--tokenizer", "none"]
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for the JSON line
        assert adapters_main([*argv, *tokenizer]) == 0, f"adapters {argv[0]} failed"


def load(data_dir: Path, name: str) -> list[dict]:
    return json.loads((data_dir / f"{name}.json").read_text(encoding="utf-8"))


def report_entry(data_dir: Path, name: str, dataset: str) -> dict:
    """The adapter's report on one dataset (token lengths, `over_cutoff`, `fitted_to_cutoff`...)."""
    return json.loads((data_dir / f"{name}_report.json").read_text(encoding="utf-8"))["datasets"][dataset]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line.rstrip("\n") + "\n" for line in lines), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def convert_logic(
    work: Path, data_dir: Path, name: str, test_problems: int, train_rows: int | None, tokenizer: list[str]
) -> Split:
    """Hold out `test_problems` problems (seed 0, whole problems); train on the others' questions, at most
    `train_rows` of them (whole problems, in the shuffled order). Problems left over by the cap become NAME_dev,
    label scoring's calibration rows; without a cap it calibrates on a slice of NAME_train."""
    lines = read_lines(LOGIC)
    order = list(range(len(lines)))
    random.Random(0).shuffle(order)
    test, rest = [lines[i] for i in order[:test_problems]], [lines[i] for i in order[test_problems:]]
    train: list[str] = []
    questions = 0
    for line in rest:
        count = len(json.loads(line)["questions"])
        if train_rows is not None and train and questions + count > train_rows:
            break
        train.append(line)
        questions += count
    spare = rest[len(train) :]
    files = ["--train", str(write_jsonl(work / "logic_train.jsonl", train))]
    files += ["--test", str(write_jsonl(work / "logic_test.jsonl", test))]  # answers kept: the adapter keeps them
    if spare:
        files += ["--dev", str(write_jsonl(work / "logic_dev.jsonl", spare))]
    adapters("logic", *files, "--name", name, "--data-dir", str(data_dir), *tokenizer)
    split = Split(name, load(data_dir, f"{name}_train"), load(data_dir, f"{name}_test"))
    split.calibrate_on = f"{name}_dev" if spare else f"{name}_train"
    assert all(r["output"] for r in split.test), "the held-out logic questions lost their answers"
    split.notes = {
        "held_out": f"round1_train_data {len(test)} problems = {len(split.test)} questions (seed 0, by problem)",
        "train_problems": len(train),
        "test_over_cutoff": report_entry(data_dir, name, f"{name}_test")["tokens"]["over_cutoff"],
    }
    return split


def logic_baselines(train: list[dict], test: list[dict]) -> dict:
    """Chance (mean of 1/options over the held-out questions) and the training majority letter."""
    from adapters.logic import record_options

    gold = [r["output"] for r in test]
    letter = Counter(r["output"] for r in train).most_common(1)[0][0]
    return {
        "chance": round(statistics.mean(1 / len(record_options(r)) for r in test), 3),
        "majority": {"label": letter, "accuracy": round(sum(g == letter for g in gold) / len(gold), 3)},
    }


def question_of(line: str) -> str:
    """An XTuner conversation's (last) question: what makes two lines duplicates."""
    return str(json.loads(line)["conversation"][-1]["input"]).strip()


def convert_qa(
    work: Path, data_dir: Path, name: str, test_rows: int, train_rows: int | None, tokenizer: list[str]
) -> Split:
    """Drop repeated questions (the first line kept), hold out `test_rows` pairs (seed 0), train on the rest
    (at most `train_rows`)."""
    lines, seen = [], set()
    all_lines = read_lines(GONGKAO)
    for line in all_lines:
        question = question_of(line)
        if question not in seen:
            seen.add(question)
            lines.append(line)
    random.Random(0).shuffle(lines)
    test, train = lines[:test_rows], lines[test_rows:][:train_rows]
    adapters(
        "qa",
        "--train",
        str(write_jsonl(work / "qa_train.jsonl", train)),
        "--test",
        str(write_jsonl(work / "qa_test.jsonl", test)),
        "--name",
        name,
        "--data-dir",
        str(data_dir),
        *tokenizer,
    )
    split = Split(name, load(data_dir, f"{name}_train"), load(data_dir, f"{name}_test"))
    split.notes = {
        "held_out": f"gongkao output.jsonl {len(split.test)} pairs (seed 0, after dropping repeated questions)",
        "duplicates_dropped": len(all_lines) - len(lines),
    }
    return split


def nearest_answers(train: list[dict], test: list[dict]) -> list[str]:
    """Retrieval baseline: each test question gets the answer of the most similar training question (cosine of
    TF-IDF character 1–3-grams)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
    train_matrix = vectorizer.fit_transform([r["instruction"] for r in train])
    similarity = vectorizer.transform([r["instruction"] for r in test]) @ train_matrix.T
    best = similarity.argmax(axis=1).A1
    return [train[int(i)]["output"] for i in best]


def convert_keywords(
    work: Path, data_dir: Path, name: str, test_rows: int, train_rows: int | None, tokenizer: list[str]
) -> Split:
    """Hold out `test_rows` papers (seed 0), train on the rest (at most `train_rows`); NAME_kw_* via the paper
    adapter, inputs trimmed to fit cutoff_len (`--fit-cutoff`: the head of the abstract kept)."""
    with IFLYTEK.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header, rows = next(reader), list(reader)
    random.Random(0).shuffle(rows)
    test, train = rows[:test_rows], rows[test_rows:][:train_rows]
    files = []
    for split_name, part in (("train", train), ("test", test)):
        path = work / f"paper_{split_name}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows([header, *part])
        files += [f"--{split_name}", str(path)]
    adapters("paper", *files, "--name", name, "--data-dir", str(data_dir), *tokenizer, "--fit-cutoff")
    task = f"{name}_kw"
    split = Split(task, load(data_dir, f"{task}_train"), load(data_dir, f"{task}_test"))
    counts = [len(keyword_set(r["output"])) for r in split.train]
    split.notes = {
        "held_out": f"iflytek test.csv (A board) {len(split.test)} papers (seed 0)",
        "train_keywords_per_paper": {
            "median": statistics.median(counts),
            "max": max(counts),
        },  # median: the baseline's k
        "test_inputs_trimmed_to_cutoff": report_entry(data_dir, name, f"{task}_test")["fitted_to_cutoff"],
    }
    return split


CONVERTERS = {"logic": convert_logic, "qa": convert_qa, "keywords": convert_keywords}
