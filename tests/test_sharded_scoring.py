"""Label scoring on 2 torchrun ranks (gloo, CPU): the merged output equals one process; a crashed rank is named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from core.fileio import atomic_write_json
from pipeline.errors import RunError
from pipeline.score import main
from pipeline.sharded_scoring import balanced_shards, merge_parts, torchrun_arguments, without_nproc


def test_shards_cover_every_row_once_and_balance_tokens():
    lengths = [50, 7, 7, 30, 12, 12, 90, 3, 41, 41, 5]
    shards = balanced_shards(lengths, 3)
    assert sorted(i for shard in shards for i in shard) == list(range(len(lengths)))
    assert all(shard == sorted(shard) for shard in shards)
    tokens = [sum(lengths[i] + 1 for i in shard) for shard in shards]
    assert max(tokens) - min(tokens) <= max(lengths)  # greedy longest-first: within one row of each other
    assert balanced_shards([5, 5], 4) == [[0], [1], [], []]  # more ranks than rows: some score nothing


def test_torchrun_arguments_from_the_train_variables():
    argv = ["--model", "tiny", "--nproc", "2", "--task", "t", "--nproc=2", "x=1"]
    assert without_nproc(argv) == ["--model", "tiny", "--task", "t", "x=1"]
    assert torchrun_arguments(argv, 2, {})[:4] == [
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "pipeline.sharded_scoring",
    ]
    nodes = torchrun_arguments([], 8, {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1"})
    assert nodes[:4] == ["--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.1", "--master-port=29500"]
    with pytest.raises(RunError, match="MASTER_ADDR"):
        torchrun_arguments([], 8, {"NNODES": "2"})


def test_merge_by_id_and_refuse_gaps(tmp_path):
    def part(rank, ids):
        atomic_write_json(
            tmp_path / f"rank{rank}_rows.json",
            {"rank": rank, "seconds": 1, "prompt_tokens": 9, "ids": ids, "scores": [[float(i), 0.0] for i in ids]},
        )

    part(0, ["3", "1"])
    part(1, ["2"])
    merged, shards = merge_parts(tmp_path, "rows", 2, ["1", "2", "3"])
    assert [m[0] for m in merged] == [1.0, 2.0, 3.0] and [s["rows"] for s in shards] == [2, 1]
    with pytest.raises(RunError, match="rank 2 wrote no"):
        merge_parts(tmp_path, "rows", 3, ["1", "2", "3"])
    with pytest.raises(RunError, match="1 ids missing"):
        merge_parts(tmp_path, "rows", 2, ["1", "2", "3", "4"])
    part(1, ["2", "1"])
    with pytest.raises(RunError, match="id 1 scored twice"):
        merge_parts(tmp_path, "rows", 2, ["1", "2", "3"])


def score_argv(run: dict[str, Path], out: Path) -> list[str]:
    return [
        "--model",
        "tiny",
        "--task",
        "cola_toy",
        "--labels",
        "0,1",
        "--split",
        "dev",
        "--batch-size",
        "4",
        "--calibrate",
        "--calibration-rows",
        "40",
        "--out",
        str(out),
        f"model_name_or_path={run['model']}",
        f"dataset_dir={run['data']}",
        f"adapter_name_or_path={run['adapter']}",
    ]


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_two_ranks_equal_one_process(tiny_lora, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # saves/ (report, parts) lands here
    assert main(score_argv(tiny_lora, tmp_path / "one.csv")) == 0
    one_report = json.loads(Path("saves/cola_toy/tiny/score/report.json").read_text())
    assert main([*score_argv(tiny_lora, tmp_path / "two.csv"), "--nproc", "2"]) == 0, capsys.readouterr().err
    report = json.loads(Path("saves/cola_toy/tiny/score/report.json").read_text())
    one, two = read_rows(tmp_path / "one.csv"), read_rows(tmp_path / "two.csv")
    assert [r["id"] for r in two] == [r["id"] for r in one] and list(two[0]) == list(one[0])
    assert [r["prediction"] for r in two] == [r["prediction"] for r in one]
    probs = [[float(r[k]) for k in ("prob_0", "prob_1")] for r in (one, two) for r in r]
    np.testing.assert_allclose(np.array(probs[:12]), np.array(probs[12:]), rtol=0, atol=1e-6 + 1e-12)
    assert report["calibration"] == one_report["calibration"]  # fitted once, on the same 40 train rows
    assert report["shards"]["processes"] == 2
    assert [s["rows"] for s in report["shards"]["rows"]] == [6, 6]
    assert sum(s["rows"] for s in report["shards"]["calibration"]) == 40
    raw = read_rows(Path(report["raw_predictions"]))
    assert [r["id"] for r in raw] == [r["id"] for r in one]
    assert not Path("saves/cola_toy/tiny/score/parts").exists()
    assert "[score] 12 rows of cola_toy_dev" in capsys.readouterr().out


@pytest.mark.slow
def test_a_crashed_rank_fails_the_run_and_merges_nothing(tiny_lora, tmp_path, monkeypatch, capsys):
    hook = tmp_path / "hook"
    hook.mkdir()
    # rank 1 dies hard (no Python error to record) as soon as it starts scoring
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import pipeline.scoring_engine as engine\n"  # where the ranks import score_encoded from
        "    engine.score_encoded = lambda *args, **kwargs: os._exit(7)\n"
    )
    monkeypatch.setenv("PYTHONPATH", f"{hook}:{Path(__file__).resolve().parents[1]}")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "two.csv"
    assert main([*score_argv(tiny_lora, out), "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert "error: rank 1 failed (exit code 7)" in err and "no merged predictions" in err
    assert not out.exists() and not list(tmp_path.glob(".two.csv*"))
    assert not Path("saves/cola_toy/tiny/score/report.json").exists()
