"""#24: every stage records its run in one tracking store (MLflow, embedded SQLite under mlruns/), linked to the runs
it used; `llmcomp runs` ranks them; `llmcomp track import` adds runs made with TRACK=0; a store that cannot be
written never fails a run; concurrent writers leave it whole; the UI serves it on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import convert_judge_sample, free_port, run_tiny, subprocess_env

TRACKED = {"TRACK": "1"}


def llmcomp(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "llmcomp", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(**(env or TRACKED)),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def store_runs(cwd: Path, task: str) -> list:
    code = (
        "import json, sys; from core import tracking; "
        f"print(json.dumps([{{'id': r.info.run_id, 'tags': r.data.tags, 'metrics': r.data.metrics, "
        f"'params': r.data.params}} for r in tracking.find_runs({task!r})]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=subprocess_env(**TRACKED)
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def by_stage(runs: list) -> dict[str, list]:
    found: dict[str, list] = {}
    for run in runs:
        found.setdefault(run["tags"]["llmcomp.stage"], []).append(run)
    return found


@pytest.mark.slow
def test_train_predict_vote_submit_leave_linked_runs_and_import_backfills(tiny_model, tmp_path):
    data = convert_judge_sample(tmp_path / "data", "jd")
    train = ("max_steps=2", "per_device_train_batch_size=4", "logging_steps=1", "cutoff_len=64")
    run_tiny("train", "jd", *train, cwd=tmp_path, model=tiny_model, data_dir=data, env={"TRACK": "0"})
    assert not (tmp_path / "mlruns").exists()  # TRACK=0: nothing recorded, the run folder is complete
    imported = llmcomp(tmp_path, "track", "import", "saves")
    assert "saves/jd/tiny/lora →" in imported.stdout
    assert "not recorded" not in imported.stdout
    again = llmcomp(tmp_path, "track", "import", "saves")
    assert again.stdout.strip() == ""  # already in the store: not recorded twice

    run_tiny("predict", "jd", "max_new_tokens=2", cwd=tmp_path, model=tiny_model, data_dir=data, env=TRACKED)
    llmcomp(tmp_path, "baseline", "--task", "jd", "--data-dir", str(data))
    files = ["predictions/jd/tiny.csv", "predictions/jd/tfidf.csv"]
    llmcomp(tmp_path, "vote", *files, "--task", "jd", "--data-dir", str(data), "--tie-breaker", "tfidf",
            "--unparsed", "3", "--max-unparsed", "100%", "--out", "submissions/jd/voted.csv")  # fmt: skip
    llmcomp(tmp_path, "submit", "--task", "jd", "--data-dir", str(data), "--pred", "submissions/jd/voted.csv",
            "--test", str(data / "jd_test.json"), "--out", "submissions/jd/")  # fmt: skip

    stages = by_stage(store_runs(tmp_path, "jd"))
    assert {"train", "predict", "baseline", "vote", "submit"} <= set(stages)
    trained = stages["train"][0]
    assert trained["params"]["learning_rate"] and trained["params"]["dataset"] == "jd_train"
    assert trained["metrics"]["loss"] > 0 and trained["tags"]["llmcomp.folder"] == "saves/jd/tiny/lora"
    predicted = stages["predict"][0]
    assert predicted["tags"]["llmcomp.train_run"] == trained["id"]  # linked to the adapter's training run
    assert predicted["metrics"]["rows"] == 12 and predicted["metrics"]["rows_per_second"] > 0
    voted = stages["vote"][0]
    assert f"tiny.csv={predicted['id']}" in voted["tags"]["llmcomp.members"]
    assert f"tfidf.csv={stages['baseline'][0]['id']}" in voted["tags"]["llmcomp.members"]
    assert voted["params"]["tie_breaker"] == "tfidf" and voted["metrics"]["n"] == 12
    assert stages["submit"][0]["metrics"]["rows"] == 12

    # the loss curve as a step series, and the run's files as artifacts
    code = (
        "from core import tracking; c = tracking.client(); "
        f"print(len(c.get_metric_history({trained['id']!r}, 'loss')), "
        f"sorted(a.path for a in c.list_artifacts({trained['id']!r})))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=subprocess_env(**TRACKED)
    ).stdout
    assert shown.startswith("2 ") and "run.yaml" in shown and "manifest.json" in shown

    board = json.loads(llmcomp(tmp_path, "runs", "--task", "jd", "--json").stdout)
    assert len(board["runs"]) >= 5 and {r["id"] for r in board["runs"]} >= {trained["id"], predicted["id"]}
    table = llmcomp(tmp_path, "runs", "--task", "jd").stdout
    assert "train tiny" in table and "vote jd" in table


def test_a_store_that_cannot_be_written_never_fails_a_run(tmp_path):
    data = convert_judge_sample(tmp_path / "data", "jd")
    (tmp_path / "mlruns").write_text("a file where the store's folder would be")
    proc = llmcomp(tmp_path, "baseline", "--task", "jd", "--data-dir", str(data))
    assert (tmp_path / "predictions/jd/tfidf.csv").is_file()
    warnings = [line for line in proc.stderr.splitlines() if "tracking store" in line]
    assert len(warnings) == 1 and "llmcomp track import" in warnings[0]
    # a team server that does not answer (a closed port): a warning, not minutes of retries, and the run done
    start = time.monotonic()
    proc = llmcomp(
        tmp_path, "baseline", "--task", "jd", "--data-dir", str(data), "--split", "test", "--limit", "3",
        env={**TRACKED, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert "was not written" in proc.stderr and time.monotonic() - start < 120
    assert (tmp_path / "predictions/jd/test-limit3/tfidf.csv").is_file()


@pytest.mark.slow
def test_two_trainings_and_a_vote_at_once_leave_the_store_whole(tiny_model, tmp_path):
    data = convert_judge_sample(tmp_path / "data", "jd")
    llmcomp(tmp_path, "baseline", "--task", "jd", "--data-dir", str(data), env={"TRACK": "0"})
    env = subprocess_env(**TRACKED)
    train = ["max_steps=1", "per_device_train_batch_size=4", "cutoff_len=64", f"model_name_or_path={tiny_model}"]
    pipeline = [sys.executable, "-m", "pipeline", "train", "--task", "jd", "--data-dir", str(data), *train]
    vote = [sys.executable, "-m", "llmcomp", "vote", "predictions/jd/tfidf.csv", "--task", "jd", "--data-dir",
            str(data), "--tie-breaker", "tfidf", "--out", "voted.csv"]  # fmt: skip
    procs = [
        subprocess.Popen([*pipeline, "--model", "tiny"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True),
        subprocess.Popen(
            [*pipeline, "--model", "tiny", "output_dir=saves/jd/tiny/lora2"],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(vote, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True),
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert not any("was not written" in err for err in errors)
    stages = by_stage(store_runs(tmp_path, "jd"))
    assert len(stages["train"]) == 2 and len(stages["vote"]) == 1


@pytest.mark.slow
def test_the_tracking_ui_shows_the_tasks_runs_and_a_loss_chart(tmp_path, page):
    data = convert_judge_sample(tmp_path / "data", "jd")
    llmcomp(tmp_path, "baseline", "--task", "jd", "--data-dir", str(data))
    code = (
        "from core import tracking; print(tracking.record('train', 'jd', 'train tiny', "
        "series={'loss': [(1, 2.5), (2, 1.9), (3, 1.2)]}, tags={'folder': 'saves/jd/tiny/lora'}))"
    )
    recorded = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=subprocess_env(**TRACKED)
    )
    train_id = recorded.stdout.strip().splitlines()[-1]
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "llmcomp", "track", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=subprocess_env(**TRACKED),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # MLflow's UI starts its own server process: stop the whole group
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert ui.poll() is None and time.monotonic() < deadline, "the UI did not come up"
            time.sleep(1)
        request = urllib.request.Request(
            f"{base}/ajax-api/2.0/mlflow/experiments/search",
            data=json.dumps({"max_results": 10}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            experiments = {e["name"]: e["experiment_id"] for e in json.loads(reply.read())["experiments"]}
        assert "jd" in experiments  # the task's experiment, served from the work folder's embedded store
        # in the real browser: the experiment lists its runs, and the training run's page charts its loss
        page.goto(f"{base}/#/experiments/{experiments['jd']}/runs", wait_until="domcontentloaded", timeout=60_000)
        page.get_by_text("baseline tfidf test").first.wait_for(timeout=90_000)
        page.get_by_text("train tiny").first.wait_for(timeout=30_000)
        page.goto(
            f"{base}/#/experiments/{experiments['jd']}/runs/{train_id}/model-metrics",
            wait_until="domcontentloaded",
            timeout=60_000,
        )
        page.get_by_text("loss", exact=True).first.wait_for(timeout=90_000)
        assert page.locator("canvas, svg").count() > 0  # a chart is drawn
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
