"""The API server (`pipeline.serve`, LLaMA-Factory's `llamafactory-cli api`) on the tiny model, and the
self-consistency client (`pipeline.self_consistency`) against it: no mocks. Two real servers start once per module, on free ports;
one is killed mid-run. Every server is stopped by its PID in the fixture's teardown.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from helpers import free_port, toy_records, write_dataset

from pipeline import self_consistency as sc
from pipeline.serve import main as serve_main

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key-not-secret"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny base model (serving needs no training: the adapter path is checked in the dry run) and data."""
    data = tmp_path_factory.mktemp("sc-data")
    for split, n, seed in (("test", 12, 2), ("long", 40, 3)):
        write_dataset(data, f"cola_toy_{split}", toy_records(n, split, seed))
    return {"model": tiny_model, "data": data}


@pytest.fixture(scope="module")
def servers(run: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """Two servers on the tiny run ("a" stays up, "b" is for killing), started together; stopped by PID."""
    logs = tmp_path_factory.mktemp("servers")
    procs: dict[str, tuple[subprocess.Popen, int, Path]] = {}
    try:
        for name in ("a", "b"):
            port, log = free_port(), logs / f"{name}.log"
            command = [
                sys.executable,
                "-m",
                "pipeline.serve",
                "--model",
                "tiny",
                "--task",
                "cola_toy",
                "--port",
                str(port),
                f"model_name_or_path={run['model']}",
                f"dataset_dir={run['data']}",
                "adapter_name_or_path=",
                f"output_dir={logs / name / 'predict'}",
            ]
            with log.open("w") as handle:
                proc = subprocess.Popen(
                    command,
                    cwd=ROOT,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "API_KEY": KEY, "DISABLE_VERSION_CHECK": "1"},
                )
            procs[name] = (proc, port, log)
        deadline = time.monotonic() + 240
        for name, (proc, port, log) in procs.items():
            while not _ready(port):
                assert proc.poll() is None, f"server {name} exited:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"server {name} not up:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
        yield {name: {"proc": proc, "port": port, "log": log} for name, (proc, port, log) in procs.items()}
    finally:
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                proc.kill()  # by PID: pipeline.serve exec'd into the server, so this is the server itself
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)


def _ready(port: int) -> bool:
    try:
        return (
            httpx.get(
                f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=2
            ).status_code
            == 200
        )
    except httpx.TransportError:
        return False


def client_args(run: dict[str, Path], port: int, out: Path, *extra: str) -> list[str]:
    return [
        "--model",
        "tiny",
        "--task",
        "cola_toy",
        "--port",
        str(port),
        "--out",
        str(out),
        f"dataset_dir={run['data']}",
        *extra,
    ]


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------- no server needed


def test_serve_refuses_without_api_key(monkeypatch, capsys):
    monkeypatch.delenv("API_KEY", raising=False)
    assert serve_main(["--model", "tiny", "--task", "cola_toy", "--dry-run"]) == 2
    assert "API_KEY" in capsys.readouterr().err


def test_key_is_never_written(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("API_KEY", KEY)
    adapter = tmp_path / "lora"
    adapter.mkdir()
    code = serve_main(
        [
            "--model",
            "tiny",
            "--task",
            "cola_toy",
            "--dry-run",
            f"model_name_or_path={run['model']}",
            f"adapter_name_or_path={adapter}",
            f"output_dir={tmp_path / 'predict'}",
        ]
    )
    assert code == 0
    run_yaml = (tmp_path / "serve" / "run.yaml").read_text()
    assert f"adapter_name_or_path: {adapter}" in run_yaml
    assert KEY not in run_yaml and "template: smollm2" in run_yaml and "default_system: ''" in run_yaml
    assert "infer_backend: huggingface" in run_yaml  # no vllm here
    assert KEY not in capsys.readouterr().out


def test_messages_are_built_like_the_training_prompt(run):
    """Same user text (and system) as LLaMA-Factory's alpaca converter gives the template."""
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.hparams import DataArguments

    records = [
        {"instruction": "Say 1 or 0.", "input": "the cat", "output": "1"},
        {"instruction": "Say 1 or 0.", "input": "", "output": "0"},
        {"instruction": "", "input": "only input", "sys": "Be brief.", "output": "1"},
    ]
    attr = DatasetAttr("file", dataset_name="x")
    attr.system = "sys"
    converter = get_dataset_converter("alpaca", attr, DataArguments())
    for record in records:
        expected = converter({**record, "sys": record.get("sys", "")})
        messages = sc.chat_messages(record, {"system": "sys"})
        assert messages[-1] == {"role": "user", "content": expected["_prompt"][0]["content"]}
        assert (messages[0]["content"] if len(messages) == 2 else "") == expected["_system"]


def test_extraction_per_row():
    from adapters import get_task
    from core.tasks import TEXT

    logic = get_task("logic")
    three = {"input": "问题\nA: 甲\nB: 乙\nC: 丙"}
    assert sc.extract("答案是C。", three, logic) == "C"
    assert sc.extract("E", three, logic) == ""  # not one of this row's options: abstains
    judge = get_task("judge")
    assert sc.extract("我给4分", {"dimension": "流畅性"}, judge) == "4"
    assert sc.extract("正确", {"dimension": "选择题"}, judge) == "1"
    assert sc.extract("  free text ", {}, TEXT) == "free text"


# ---------------------------------------------------------------- real servers


def test_samples_file_feeds_the_vote(run, servers, tmp_path, monkeypatch):
    monkeypatch.setenv("API_KEY", KEY)
    out = tmp_path / "tiny_samples.csv"
    assert sc.main(client_args(run, servers["a"]["port"], out, "--samples", "3", "--max-tokens", "4")) == 0
    rows = read_rows(out)
    assert list(rows[0]) == ["id", "prediction", "sample", "text"]
    assert sorted((r["id"], r["sample"]) for r in rows) == sorted(
        (f"test-{i}", str(s)) for i in range(12) for s in range(3)
    )
    assert all(r["prediction"] in ("", "0", "1") for r in rows)
    assert sc.main(client_args(run, servers["a"]["port"], out, "--samples", "3")) == 2  # exists: --resume or --fresh
    voted = tmp_path / "voted.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "voting",
            "self-consistency",
            str(out),
            "--task",
            "cola",
            "--unparsed",
            "0",
            "--out",
            str(voted),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert len(read_rows(voted)) == 12


def test_wrong_key_stops_at_once(run, servers, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("API_KEY", "wrong")
    assert sc.main(client_args(run, servers["a"]["port"], tmp_path / "s.csv", "--samples", "1")) == 2
    assert "rejected API_KEY" in capsys.readouterr().err


def test_timeouts_are_reported_then_resumed(run, servers, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("API_KEY", KEY)
    out = tmp_path / "tiny_samples.csv"
    args = client_args(run, servers["a"]["port"], out, "--samples", "2", "--max-tokens", "4")
    assert sc.main([*args, "--timeout", "0.001", "--retries", "1", "--backoff", "0.01"]) == 1
    err = capsys.readouterr().err
    assert "12 ids incomplete" in err and "timed out after 2 tries" in err and "test-0" in err and "--resume" in err
    assert read_rows(out) == []
    assert sc.main([*args, "--resume"]) == 0
    assert len(read_rows(out)) == 24


def test_server_killed_mid_run_then_resume(run, servers, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("API_KEY", KEY)
    out = tmp_path / "tiny_samples.csv"
    common = [
        "--split",
        "long",
        "--samples",
        "3",
        "--max-tokens",
        "48",
        "--concurrency",
        "1",
        "--flush-seconds",
        "0",
        "--retries",
        "2",
        "--backoff",
        "0.05",
    ]
    codes: list[int] = []
    client = threading.Thread(
        target=lambda: codes.append(sc.main(client_args(run, servers["b"]["port"], out, *common)))
    )
    client.start()
    deadline = time.monotonic() + 120
    while not (out.is_file() and len({r["id"] for r in read_rows(out)}) >= 2):
        assert client.is_alive() and time.monotonic() < deadline, "the client finished or stalled before the kill"
        time.sleep(0.02)
    servers["b"]["proc"].kill()  # the server goes away mid-run
    servers["b"]["proc"].wait(timeout=30)
    client.join(timeout=120)
    assert codes == [1]
    err = capsys.readouterr().err
    before = read_rows(out)
    done = {r["id"] for r in before}
    assert 2 <= len(done) < 40 and len(before) == 3 * len(done)  # whole ids only, nothing half-written
    assert "ids incomplete" in err and "--resume" in err
    missing = [f"long-{i}" for i in range(40) if f"long-{i}" not in done]
    assert missing[0] in err
    # resume against the server that is still up: only the missing ids are asked for, earlier samples are kept
    assert sc.main(client_args(run, servers["a"]["port"], out, *common, "--resume")) == 0
    after = read_rows(out)
    assert len(after) == 120
    kept = {(r["id"], r["sample"]): r["text"] for r in before}
    assert all(kept[(r["id"], r["sample"])] == r["text"] for r in after if (r["id"], r["sample"]) in kept)
    assert json.dumps(sorted({r["id"] for r in after})) == json.dumps(sorted(f"long-{i}" for i in range(40)))
