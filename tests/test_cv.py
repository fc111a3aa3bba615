"""Issue #23 part 1: fold assignment (grouped: no logic problem in two folds; stratified within judge dimensions),
the refusals before any training, and `make cv` → `make fit-ensemble` → `make vote ENSEMBLE=` end to end on the tiny
model, with a fold resumed after an interruption."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter, defaultdict

import pandas as pd
import pytest
from helpers import run_make, toy_records, write_dataset

from core.tasks import get_task
from pipeline.cv import main as cv_main
from pipeline.errors import RunError
from pipeline.folds import assign_folds, check_foldable, folds_sha256


def logic_like(problems: int, seed: int = 0) -> list[dict]:
    """Questions `<problem>#<index>`, 1–4 per problem, answers A–D."""
    rng = random.Random(seed)
    return [
        {"id": f"p{p}#{q}", "input": "A: x\nB: y\nC: z\nD: w", "output": rng.choice("ABCD")}
        for p in range(problems)
        for q in range(rng.randint(1, 4))
    ]


def test_logic_folds_keep_each_problem_whole_and_are_seeded():
    records = logic_like(60)
    logic = get_task("logic")
    folds = assign_folds(records, 5, 0, logic)
    by_problem = defaultdict(set)
    for record in records:
        by_problem[record["id"].split("#")[0]].add(folds[record["id"]])
    assert all(len(f) == 1 for f in by_problem.values())  # no problem in two folds
    sizes = Counter(folds.values())
    assert sorted(sizes) == [0, 1, 2, 3, 4] and max(sizes.values()) - min(sizes.values()) <= 4
    assert assign_folds(records, 5, 0, logic) == folds
    assert folds_sha256(assign_folds(records, 5, 1, logic), 5) != folds_sha256(folds, 5)


def test_judge_folds_stratify_within_each_dimension():
    rng = random.Random(0)
    records = [
        {"id": f"r{i}", "dimension": dimension, "output": rng.choice("12345")}
        for i, dimension in enumerate(["流畅性"] * 120 + ["规范性"] * 80)
    ]
    folds = assign_folds(records, 4, 0, get_task("judge"))
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for record in records:
        counts[(record["dimension"], record["output"])][folds[record["id"]]] += 1
    for stratum, per_fold in counts.items():
        assert max(per_fold.values()) - min(per_fold.get(k, 0) for k in range(4)) <= 1, (stratum, per_fold)


def test_refusals_before_any_training_name_the_counts():
    cola = get_task("cola")
    with pytest.raises(RunError, match="has 3 rows, fewer than FOLDS=5"):
        check_foldable([{"id": str(i), "output": "1"} for i in range(3)], 5, cola, "t_train")
    rows = [{"id": str(i), "output": "1"} for i in range(10)] + [{"id": "x", "output": "0"}]
    with pytest.raises(RunError, match=r"fewer rows than FOLDS=5 \('0': 1; all: \{'0': 1, '1': 10\}"):
        check_foldable(rows, 5, cola, "t_train")
    with pytest.raises(RunError, match="3 groups of rows that stay together"):
        check_foldable(
            [{"id": f"p{p}#{q}", "output": "A"} for p in range(3) for q in range(4)], 5, get_task("logic"), "t"
        )
    judge = [{"id": str(i), "dimension": "流畅性", "output": "4"} for i in range(8)]
    with pytest.raises(RunError, match="'流畅性=3': 2"):
        check_foldable(
            [*judge, *({"id": f"y{i}", "dimension": "流畅性", "output": "3"} for i in range(2))],
            5,
            get_task("judge"),
            "t",
        )


def test_cv_refuses_a_small_split_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "data", "toy_train", toy_records(6, "train", 0))
    write_dataset(tmp_path / "data", "toy_test", toy_records(4, "test", 1))
    code = cv_main(["--model", "tiny", "--task", "toy", "--data-dir", "data", "--folds", "8"])
    assert code == 2 and "has 6 rows, fewer than FOLDS=8" in capsys.readouterr().err
    assert not (tmp_path / "saves").exists() and not (tmp_path / "data/toy_folds.json").exists()


@pytest.mark.slow
def test_make_cv_fit_ensemble_and_vote_end_to_end_with_a_resumed_fold(tiny_model, tmp_path):
    data = tmp_path / "data"
    write_dataset(data, "toy_train", toy_records(24, "train", 0, even=True))
    write_dataset(data, "toy_test", [{**r, "output": ""} for r in toy_records(6, "test", 1)])
    args = f"model_name_or_path={tiny_model} max_steps=2 save_steps=1 per_device_train_batch_size=4 plot_loss=false"
    cv = ("cv", "MODEL=tiny", "TASK=toy", "FOLDS=2", "DATA_DIR=data")
    first = run_make(tmp_path, *cv, "FOLD=0", env={"ARGS": args})
    assert "folds 1 not finished yet" in first.stdout
    assert not (tmp_path / "predictions/toy/tiny_oof.csv").exists()
    run_make(tmp_path, *cv, "FOLD=1", env={"ARGS": args})
    # fold 1 interrupted after its first checkpoint: its final save and scores lost, its manifest says so
    fold1 = tmp_path / "saves/toy/tiny/cv/fold-1"
    for name in ("adapter_model.safetensors", "adapter_config.json", "heldout.csv", "test.csv"):
        (fold1 / name).unlink()
    shutil.rmtree(fold1 / "checkpoint-2")
    manifest = json.loads((fold1 / "manifest.json").read_text())
    (fold1 / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted (SIGINT)"}))
    resumed = run_make(tmp_path, *cv, env={"ARGS": args})
    assert "fold 0: finished" in resumed.stdout and "resuming from" in resumed.stdout
    assert (fold1 / "run.yaml").is_file() and json.loads((fold1 / "manifest.json").read_text())["status"] == "done"

    folds = json.loads((data / "toy_folds.json").read_text())
    oof = pd.read_csv(tmp_path / "predictions/toy/tiny_oof.csv", dtype=str)
    assert list(oof.columns[:3]) == ["id", "fold", "prediction"] and {"prob_0", "prob_1"} <= set(oof.columns)
    assert dict(zip(oof["id"], oof["fold"].astype(int), strict=True)) == folds["assignment"]
    origin = json.loads((tmp_path / "predictions/toy/tiny_oof.origin.json").read_text())
    assert origin["folds_sha256"] == folds["sha256"] and (origin["dataset"], origin["split"]) == ("toy_train", "train")
    assert len(pd.read_csv(tmp_path / "predictions/toy/tiny_cv.csv")) == 6

    run_make(tmp_path, "cv", "MODEL=tfidf", "TASK=toy", "FOLDS=2", "DATA_DIR=data")
    fitted = run_make(tmp_path, "fit-ensemble", "TASK=toy", "DATA_DIR=data")
    ensemble = json.loads((tmp_path / "submissions/toy/ensemble.json").read_text())
    assert ensemble["fold_sha256"] == folds["sha256"], fitted.stdout
    assert {m["name"] for m in ensemble["members"]} == {"tiny", "tfidf"}
    assert (tmp_path / "submissions/toy/ensemble/report.md").is_file()
    run_make(tmp_path, "vote", "TASK=toy", "DATA_DIR=data", "ENSEMBLE=submissions/toy/ensemble.json")
    assert len(pd.read_csv(tmp_path / "submissions/toy/voted.csv")) == 6
    assert (tmp_path / "submissions/toy/result_CoLA.txt").is_file()
    # a member changed since the fit is refused by name
    (tmp_path / "predictions/toy/tfidf_cv.csv").write_text("id,prediction\n", encoding="utf-8")
    refused = run_make(
        tmp_path, "vote", "TASK=toy", "DATA_DIR=data", "ENSEMBLE=submissions/toy/ensemble.json", check=False
    )
    assert refused.returncode != 0 and "member tfidf" in refused.stderr and "changed since" in refused.stderr


def test_zero_shot_and_label_frequency_members_on_the_dev_split(tiny_model, tmp_path):
    """BASE=1: the untrained model's OOF file (no training run, the split scored once and shared by every fold);
    MODEL=majority: the other folds' label frequencies; SPLIT=dev: the cv files are the dev split's, in its folder."""
    data = tmp_path / "data"
    write_dataset(data, "toy_train", toy_records(12, "train", 0, even=True))
    write_dataset(data, "toy_dev", toy_records(5, "dev", 1))
    args = f"model_name_or_path={tiny_model}"
    cv = ("cv", "TASK=toy", "FOLDS=2", "DATA_DIR=data", "SPLIT=dev")
    run_make(tmp_path, *cv, "MODEL=tiny", "BASE=1", env={"ARGS": args})
    run_make(tmp_path, *cv, "MODEL=majority")
    folds = json.loads((data / "toy_folds.json").read_text())
    base = tmp_path / "saves/toy/tiny/cv-base"
    assert not list(base.rglob("adapter_config.json")) and not (tmp_path / "saves/toy/tiny/cv").exists()
    assert (base / "fold-0/dev.csv").read_text() == (base / "fold-1/dev.csv").read_text()  # scored once
    oof = pd.read_csv(tmp_path / "predictions/toy/tiny-base_oof.csv", dtype=str)
    assert dict(zip(oof["id"], oof["fold"].astype(int), strict=True)) == folds["assignment"]
    assert len(pd.read_csv(tmp_path / "predictions/toy/dev/tiny-base_cv.csv")) == 5
    origin = json.loads((tmp_path / "predictions/toy/dev/majority_cv.origin.json").read_text())
    assert origin["split"] == "dev" and origin["folds_sha256"] == folds["sha256"]
    prior = pd.read_csv(tmp_path / "predictions/toy/majority_oof.csv")
    for k in (0, 1):  # fold k's probabilities: the label shares of the other fold's rows
        other = [r["output"] for r in toy_records(12, "train", 0, even=True) if folds["assignment"][r["id"]] != k]
        assert prior[prior["fold"] == k]["prob_1"].round(4).unique().tolist() == [round(other.count("1") / 6, 4)]
    refused = run_make(tmp_path, *cv, "MODEL=tfidf", "BASE=1", check=False)
    assert refused.returncode != 0 and "fitted on the other folds" in refused.stderr
    fitted = run_make(tmp_path, "fit-ensemble", "TASK=toy", "DATA_DIR=data")
    assert {m["name"] for m in json.loads((tmp_path / "submissions/toy/ensemble.json").read_text())["members"]} == {
        "tiny-base",
        "majority",
    }, fitted.stdout
    # the fitted ensemble on the dev split's cv files (SPLIT=dev), into the split's own folder
    run_make(tmp_path, "vote", "TASK=toy", "DATA_DIR=data", "SPLIT=dev", "ENSEMBLE=submissions/toy/ensemble.json")
    assert len(pd.read_csv(tmp_path / "submissions/toy/dev/voted.csv")) == 5
    assert not (tmp_path / "submissions/toy/voted.csv").exists()
