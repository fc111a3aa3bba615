"""#21 "misleading messages": what a stopped or blocked run says is what happened and what to do next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "DISABLE_VERSION_CHECK": "1"}
SAMPLES = ROOT / "data" / "samples"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def judge_sample(tmp_path_factory) -> Path:
    from adapters.cli import main

    data = tmp_path_factory.mktemp("msg") / "data"
    files = ["--train", str(SAMPLES / "judge_train.csv"), "--test", str(SAMPLES / "judge_test.csv")]
    assert main(["judge", *files, "--task", "judge", "--data-dir", str(data), "--tokenizer", "none"]) == 0
    return data


def stage(name: str, tiny_model: Path, data: Path, *overrides: str) -> list[str]:
    return [
        *(sys.executable, "-m", "pipeline", name, "--model", "tiny", "--task", "judge", "--data-dir", str(data)),
        f"model_name_or_path={tiny_model}",
        "cutoff_len=64",
        *overrides,
    ]


def lock_pids(lock: Path) -> list[int]:
    try:
        return [int(x) for x in lock.read_text().split()]
    except (OSError, ValueError):
        return []


def wait_for_child(runner: subprocess.Popen, lock: Path, log: Path, seconds: float = 240) -> None:
    """Until the runner has started its llamafactory child (two PIDs in the lock)."""
    deadline = time.monotonic() + seconds
    while len(lock_pids(lock)) < 2:
        assert runner.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)


def test_predict_while_training_says_a_run_is_writing_the_folder(tiny_model, judge_sample, tmp_path):
    log = tmp_path / "train.log"
    with log.open("w") as out:
        runner = subprocess.Popen(
            stage("train", tiny_model, judge_sample, "max_steps=100000", "save_steps=100000"),
            cwd=tmp_path,
            env=ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_child(runner, tmp_path / "saves/judge/tiny/.lora.lock", log)
        proc = subprocess.run(
            stage("predict", tiny_model, judge_sample), cwd=tmp_path, env=ENV, capture_output=True, text=True
        )
        assert proc.returncode == 2
        assert f"a training run (PID {runner.pid}) is writing this folder" in proc.stderr
        assert "train it first" not in proc.stderr
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            runner.kill()


def test_ctrl_c_during_predict_does_not_promise_checkpoints(tiny_model, judge_sample, tmp_path):
    log = tmp_path / "predict.log"
    overrides = ("adapter_name_or_path=", "max_new_tokens=4000", "do_sample=false")
    with log.open("w") as out:
        runner = subprocess.Popen(
            stage("predict", tiny_model, judge_sample, *overrides),
            cwd=tmp_path,
            env=ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_child(runner, tmp_path / "saves/judge/tiny/.predict.lock", log)
        time.sleep(1)
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=300) == 128 + signal.SIGINT  # a loaded 2-core machine took over 120 s
    finally:
        if runner.poll() is None:
            runner.kill()
    said = log.read_text()
    assert "re-run to predict again" in said and "nothing was written to predictions/" in said
    assert "checkpoint" not in said.split("SIGINT: stopped")[-1]
    assert not (tmp_path / "predictions").exists()
