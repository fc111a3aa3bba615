"""The embedded default on a real task: SmolLM2-135M LoRA on CoLA from ../shared/data, train then predict."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.smollm2, pytest.mark.shared, pytest.mark.slow]


def test_smollm2_answers_a_question(smollm2_dir):
    from tools.embedded import ask

    assert "Paris" in ask(smollm2_dir, "What is the capital of France?")


def test_smollm2_trains_and_predicts_cola(smollm2_dir, shared_data, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    data_dir = tmp_path / "data"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "adapters",
            "cola",
            "--train",
            str(shared_data / "cola/in_domain_train.tsv"),
            "--dev",
            str(shared_data / "cola/in_domain_dev.tsv"),
            "--name",
            "cola",
            "--data-dir",
            str(data_dir),
            "--max-train",
            "48",
            "--first-dev",
            "12",
            "--tokenizer",
            "none",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    common = [
        "--model",
        "smollm2",
        "--task",
        "cola",
        "--data-dir",
        str(data_dir),
        f"model_name_or_path={smollm2_dir}",
        f"dataset_dir={data_dir}",
    ]
    for stage, overrides in (
        ("train", ["max_steps=3", "per_device_train_batch_size=4", "save_steps=3"]),
        ("predict", ["--split", "dev", "max_new_tokens=2"]),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", stage, *common, *overrides],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with (tmp_path / "predictions/cola/dev/smollm2.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    assert all(row["prediction"].strip() for row in rows), rows  # the model generated something for every row
