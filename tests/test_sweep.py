"""Sweeps on Optuna (issue #25): a space checked before any trial, trials that complete, prune and fail, a study
resumed after its process is killed, two processes on one SQLite study, and PARAMS= training with best.yaml."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_make, subprocess_env, toy_records, write_dataset

from pipeline.errors import RunError
from pipeline.run import Run

STUDY = "cola_toy-tiny"
SPACE = """learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
max_steps: {low: 1, high: 30}
lora_dropout: {low: 0.0, high: 0.2}
"""


def toy_data(base: Path) -> Path:
    for split, n, seed in (("train", 32, 0), ("dev", 8, 1)):
        write_dataset(base / "data", f"cola_toy_{split}", toy_records(n, split, seed))
    (base / "space.yaml").write_text(SPACE)
    return base / "data"


def storage(base: Path) -> str:
    return f"sqlite:///{base}/saves/cola_toy/tiny/sweep/study.db"


def enqueue(base: Path, *trials: dict) -> None:
    """The study created ahead with these trials queued first (Optuna's enqueue_trial): each trial's fate is fixed."""
    import optuna

    (base / "saves/cola_toy/tiny/sweep").mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=STUDY, storage=storage(base), direction="maximize", load_if_exists=True)
    for params in trials:
        study.enqueue_trial({"learning_rate": 1e-3, "lora_dropout": 0.1, **params})


def trials(base: Path) -> list:
    import optuna

    return optuna.load_study(study_name=STUDY, storage=storage(base)).get_trials()


def sweep_command(base: Path, model: Path, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline.sweep",
        "--model",
        "tiny",
        "--task",
        "cola_toy",
        "--data-dir",
        str(base / "data"),
        "--space",
        str(base / "space.yaml"),
        *flags,
        f"model_name_or_path={model}",
    ]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("lerning_rate: {low: 1.0e-5, high: 1.0e-3}", "lerning_rate: not a LLaMA-Factory argument"),
        ("learning_rate: {low: 1.0e-3, high: 1.0e-5}", "an empty range (low 0.001 > high 1e-05)"),
        ("lora_rank: []", "lora_rank: an empty list of choices"),
        ("lora_rank: {low: 2, high: 8.5}", "lora_rank is 8.5, expected an integer"),
        ("lora_rank: [4, eight]", "lora_rank is 'eight', expected an integer"),
        ("learning_rate: {low: 0, high: 1.0e-3, log: true}", "a log range needs low > 0"),
        ("output_dir: [a, b]", "the sweep sets output_dir itself"),
        ("lora_target: {low: 1, high: 2}", "lora_target is not a number"),
    ],
)
def test_a_bad_space_is_refused_before_any_trial(tmp_path, monkeypatch, space, message):
    from pipeline.sweep import sweep

    data = toy_data(tmp_path)
    (tmp_path / "space.yaml").write_text(space)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError) as err:
        sweep(Run.resolve("cola_toy", "tiny", data, "dev"), 3, str(tmp_path / "space.yaml"))
    assert message in str(err.value) and "space.yaml" in str(err.value)
    assert not (tmp_path / "saves").exists()


def test_every_preset_space_is_valid():
    from core.paths import CONFIG_DIR
    from pipeline.sweep_space import read_space

    for path in [CONFIG_DIR / "sweep.yaml", *sorted(CONFIG_DIR.glob("*/sweep.yaml"))]:
        assert {"learning_rate", "lora_rank", "lora_alpha", "lora_dropout"} <= {p.name for p in read_space(path)}


def test_a_nan_loss_and_the_last_step_are_read_from_the_trainer_state(tmp_path):
    from pipeline.sweep import nan_loss_step, planned_steps

    logs = [{"loss": 2.5, "step": 1}, {"loss": float("nan"), "step": 2}, {"eval_loss": 1.0, "step": 2}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": logs, "max_steps": 4}))
    assert nan_loss_step(tmp_path) == 2 and planned_steps(tmp_path) == 4
    assert nan_loss_step(tmp_path / "absent") is None and planned_steps(tmp_path / "absent") == float("inf")


def test_params_file_overrides_come_before_args(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main

    data = toy_data(tmp_path)
    (tmp_path / "best.yaml").write_text("# a sweep's best\nlearning_rate: 0.0005\nlora_rank: 2\nmax_steps: 3\n")
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--model", "tiny", "--task", "cola_toy", "--data-dir", str(data), "--dry-run"]
    assert main([*argv, "--params", "best.yaml", "max_steps=5"]) == 0
    resolved = capsys.readouterr().out
    assert "learning_rate: 0.0005" in resolved and "lora_rank: 2" in resolved and "max_steps: 5" in resolved
    (tmp_path / "bad.yaml").write_text("- a list\n")
    assert main([*argv, "--params", "bad.yaml"]) == 2
    assert "PARAMS=bad.yaml: expected key: value pairs" in capsys.readouterr().err


@pytest.mark.slow
def test_a_study_with_a_complete_a_pruned_and_a_failed_trial(tiny_model, tmp_path):
    toy_data(tmp_path)
    # 1 step: its only checkpoint is the last step (never pruned); 30 steps: pruned at checkpoint-2 (accuracy can
    # never reach 1.01); dropout 2.0: torch refuses it, training crashes
    enqueue(tmp_path, {"max_steps": 1}, {"max_steps": 30}, {"max_steps": 2, "lora_dropout": 2.0})
    flags = ("--trials", "3", "--metric", "accuracy", "--prune-below", "1.01")
    result = subprocess.run(
        sweep_command(tmp_path, tiny_model, *flags), cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    states = [(t.number, t.state.name) for t in trials(tmp_path)]
    assert states == [(0, "COMPLETE"), (1, "PRUNED"), (2, "FAIL")]
    sweep_dir = tmp_path / "saves/cola_toy/tiny/sweep"
    assert json.loads((sweep_dir / "trial-1/manifest.json").read_text())["status"].startswith("pruned at step 2")
    assert not (sweep_dir / "trial-1/adapter_config.json").exists() or "pruned" in result.stdout
    assert json.loads((sweep_dir / "trial-2/manifest.json").read_text())["status"].startswith("failed")
    assert "selection.json" in os.listdir(sweep_dir / "trial-0")
    best = (sweep_dir / "best.yaml").read_text()
    assert "max_steps: 1" in best and "PARAMS=" in best and (sweep_dir / "history.png").stat().st_size > 1000
    assert "importances need 2 at least" in result.stdout


@pytest.mark.slow
def test_a_killed_study_resumes_its_trial_from_the_last_checkpoint(tiny_model, tmp_path):
    toy_data(tmp_path)
    enqueue(tmp_path, {"max_steps": 12}, {"max_steps": 1})
    command = sweep_command(tmp_path, tiny_model, "--trials", "2", "--heartbeat", "1")
    first = subprocess.Popen(
        command, cwd=tmp_path, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = tmp_path / "saves/cola_toy/tiny/sweep/trial-0/checkpoint-2/trainer_state.json"
    deadline = time.monotonic() + 300
    while not checkpoint.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert checkpoint.is_file(), "the first trial never saved checkpoint-2"
    first.send_signal(signal.SIGKILL)  # no clean-up at all: its trainer dies with it (PR_SET_PDEATHSIG)
    first.wait()
    time.sleep(3)  # the heartbeat's grace period (2 × 1 s): the trial is now stale
    result = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming from saves/cola_toy/tiny/sweep/trial-0/checkpoint-" in result.stdout
    found = {t.number: (t.state.name, t.user_attrs.get("folder")) for t in trials(tmp_path)}
    assert found[0] == ("FAIL", "trial-0") and found[1] == ("COMPLETE", "trial-1")
    assert found[2] == ("COMPLETE", "trial-0") and len(found) == 3  # the retry, in the killed trial's folder
    manifest = json.loads((tmp_path / "saves/cola_toy/tiny/sweep/trial-0/manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["previous"]["status"] == "interrupted"


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(tiny_model, tmp_path):
    data = toy_data(tmp_path)
    (tmp_path / "space.yaml").write_text("learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\nmax_steps: [1, 2]\n")
    make = (
        "sweep",
        "MODEL=tiny",
        "TASK=cola_toy",
        f"DATA_DIR={data}",
        "TRIALS=4",
        f"SPACE={tmp_path / 'space.yaml'}",
        f"ARGS=model_name_or_path={tiny_model}",
    )
    from helpers import make_command

    first = subprocess.Popen(
        make_command(tmp_path, *make), cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, text=True
    )
    study_db = tmp_path / "saves/cola_toy/tiny/sweep/study.db"
    while not study_db.is_file() and first.poll() is None:
        time.sleep(0.2)
    time.sleep(2)  # its tables created
    second = run_make(tmp_path, *make, timeout=900)
    out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-3000:]
    found = trials(tmp_path)
    assert [t.state.name for t in found] == ["COMPLETE"] * len(found) and 4 <= len(found) <= 5
    folders = [t.user_attrs["folder"] for t in found]
    assert len(set(folders)) == len(found)
    for folder in folders:
        assert (tmp_path / "saves/cola_toy/tiny/sweep" / folder / "adapter_config.json").is_file()
    both = out + second.stdout
    assert all(f"[sweep] trial {t.number} (" in both for t in found)  # each trial ran in one of the two
    assert "[sweep] trial" in out and "[sweep] trial" in second.stdout  # and each process ran some


@pytest.mark.slow
def test_ctrl_c_stops_the_trial_as_make_train_does_and_queues_it_again(tiny_model, tmp_path):
    toy_data(tmp_path)
    enqueue(tmp_path, {"max_steps": 30})
    sweep = subprocess.Popen(
        sweep_command(tmp_path, tiny_model, "--trials", "1"),
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoint = tmp_path / "saves/cola_toy/tiny/sweep/trial-0/checkpoint-2/trainer_state.json"
    deadline = time.monotonic() + 300
    while not checkpoint.is_file() and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    sweep.send_signal(signal.SIGINT)
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 130, out[-2000:] + err[-2000:]
    assert "the sweep stopped during trial 0; make sweep again resumes it" in err
    manifest = json.loads((tmp_path / "saves/cola_toy/tiny/sweep/trial-0/manifest.json").read_text())
    assert manifest["status"] == "interrupted (SIGINT)"
    found = [(t.number, t.state.name, t.user_attrs.get("folder")) for t in trials(tmp_path)]
    assert found == [(0, "FAIL", "trial-0"), (1, "WAITING", "trial-0")]  # the next sweep resumes trial-0's folder


@pytest.mark.slow
def test_timeout_starts_no_trial_after_it_and_writes_the_results(tiny_model, tmp_path):
    """TIMEOUT=: the first trial runs (no time had passed), none starts after; best.yaml is written from what ran."""
    toy_data(tmp_path)
    enqueue(tmp_path, {"max_steps": 1}, {"max_steps": 1})
    result = subprocess.run(
        sweep_command(tmp_path, tiny_model, "--trials", "5", "--timeout", "0.5"),
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [t.state.name for t in trials(tmp_path)] == ["COMPLETE", "WAITING"]
    assert "TIMEOUT=0.5 s passed: no new trial (2 of 5" in result.stdout
    assert (tmp_path / "saves/cola_toy/tiny/sweep/best.yaml").is_file()
