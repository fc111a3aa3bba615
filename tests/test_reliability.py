"""Issue #12: the fault audit's cases, one test each (real processes where a fault needs them): locked and
all-or-none conversions, one trainer per run folder, resume from the last complete checkpoint, redacted secrets,
formula-safe CSVs, refused bad input (encodings, XLSX, names, overrides, ids, groups) and a keyed API server."""

from __future__ import annotations

import concurrent.futures
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from helpers import (
    FAST_TRAIN,
    JUDGE_HEADER,
    JUDGE_ROWS,
    convert,
    run_make,
    subprocess_env,
    tiny_args,
    tiny_command,
    write_csv,
    write_xlsx,
)

from core import InputError
from core.fileio import atomic_write_csv

ROOT = Path(__file__).resolve().parents[1]
ENV = subprocess_env()


def judge_csv(path: Path, rows: list[list[str]] | None = None, encoding: str = "utf-8") -> Path:
    return write_csv(path, rows or JUDGE_ROWS, encoding, JUDGE_HEADER)


# ---------------------------------------------------------------- 1. the registry's read-modify-write is locked


def test_eight_parallel_conversions_keep_all_eight_entries(tmp_path):
    data = tmp_path / "data"
    source = judge_csv(tmp_path / "train.csv")
    commands = [
        [
            sys.executable,
            "-m",
            "adapters",
            "judge",
            "--train",
            str(source),
            "--name",
            f"n{i}",
            "--data-dir",
            str(data),
            "--tokenizer",
            "none",
        ]
        for i in range(8)
    ]
    procs = [
        subprocess.Popen(c, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    registry = json.loads((data / "dataset_info.json").read_text(encoding="utf-8"))
    assert sorted(registry) == [f"n{i}_train" for i in range(8)]


def test_registry_merge_waits_for_the_lock(tmp_path, monkeypatch):
    """Deterministic: every read of the registry is slowed, so unlocked writers would overwrite each other."""
    import adapters.writing as writing

    original = writing.read_registry

    def slow_read(data_dir):
        registry = original(data_dir)
        time.sleep(0.2)
        return registry

    monkeypatch.setattr(writing, "read_registry", slow_read)
    source = judge_csv(tmp_path / "train.csv")
    data = tmp_path / "data"
    args = writing_args()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda i: writing.run_conversion(
                    __import__("adapters").ADAPTERS["judge"], {"train": source}, f"t{i}", data, args, tokenizer="none"
                ),
                range(4),
            )
        )
    assert sorted(json.loads((data / "dataset_info.json").read_text())) == [f"t{i}_train" for i in range(4)]


def writing_args():
    from adapters.cli import build_parser

    return build_parser().parse_args(["judge", "--name", "x"])


# ---------------------------------------------------------------- 2. a conversion is all or none


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.endswith(".lock")}


def test_write_failing_midway_leaves_the_old_set_whole(tmp_path, capsys, monkeypatch):
    import adapters.writing as writing

    data = tmp_path / "data"
    assert (
        convert(
            capsys, "judge", data, "--train", judge_csv(tmp_path / "a.csv"), "--test", judge_csv(tmp_path / "b.csv")
        )[0]
        == 0
    )
    before = _snapshot(data)
    calls = []
    original = writing.write_records

    def failing(path, records, opener):
        calls.append(path.name)
        if len(calls) == 2:  # the second split: disk full half-way through
            with opener(path, "w", encoding="utf-8") as handle:
                handle.write("[\n")
                raise OSError(errno.ENOSPC, "No space left on device")
        original(path, records, opener=opener)

    monkeypatch.setattr(writing, "write_records", failing)
    rows = [[f"X{i}", *row[1:]] for i, row in enumerate(JUDGE_ROWS)]
    code, _, err = convert(
        capsys,
        "judge",
        data,
        "--train",
        judge_csv(tmp_path / "c.csv", rows),
        "--test",
        judge_csv(tmp_path / "d.csv", rows),
    )
    assert code == 2 and "No space left" in err and "t_test.json" in err and "Traceback" not in err
    assert _snapshot(data) == before  # train, test, report and registry all still the first run's; no temp left


def test_file_size_limit_in_a_real_process_leaves_the_old_set_whole(tmp_path):
    """ulimit -f: the test split (written second) exceeds the limit; the train split written before it is undone."""
    import resource

    data = tmp_path / "data"
    command = [sys.executable, "-m", "adapters", "judge", "--name", "t", "--data-dir", str(data), "--tokenizer", "none"]
    small = judge_csv(tmp_path / "small.csv")
    subprocess.run([*command, "--train", small, "--test", small], env=ENV, check=True, capture_output=True)
    before = _snapshot(data)
    big = judge_csv(tmp_path / "big.csv", [[f"B{i}", "", "流畅性", "很长的文章。" * 40, "3"] for i in range(400)])

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    other = judge_csv(tmp_path / "other.csv", [[f"O{i}", *row[1:]] for i, row in enumerate(JUDGE_ROWS)])
    result = subprocess.run(
        [*command, "--train", other, "--test", big], env=ENV, capture_output=True, text=True, preexec_fn=limit
    )
    assert result.returncode == 2, result.stderr
    assert "t_test.json" in result.stderr and "Traceback" not in result.stderr
    assert _snapshot(data) == before


# ---------------------------------------------------------------- 3-5. one trainer per folder, resume, secrets


def _pids(lock: Path) -> list[int]:
    try:
        return [int(x) for x in lock.read_text().split()]
    except (OSError, ValueError):
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped) counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def train_command(tiny_model: Path, data: Path, *overrides: str) -> list[str]:
    return tiny_command("train", "judge", *FAST_TRAIN, "cutoff_len=64", *overrides, model=tiny_model, data_dir=data)


@pytest.mark.slow
def test_one_trainer_per_folder_kill9_sigterm_and_resume_past_a_broken_checkpoint(tiny_model, judge_data, tmp_path):
    lora, lock = tmp_path / "saves/judge/tiny/lora", tmp_path / "saves/judge/tiny/.lora.lock"
    log = (tmp_path / "a.log").open("w")
    runner = subprocess.Popen(
        train_command(tiny_model, judge_data, "max_steps=100000", "save_steps=2"),
        cwd=tmp_path,
        env=ENV,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while not ((lora / "checkpoint-4" / "trainer_state.json").is_file() and len(_pids(lock)) == 2):
            assert runner.poll() is None, (tmp_path / "a.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "a.log").read_text()[-3000:]
            time.sleep(0.3)
        wrapper, trainer = _pids(lock)
        assert wrapper == runner.pid and _alive(trainer)
        assert json.loads((lora / "manifest.json").read_text())["status"] == "running"

        second = subprocess.run(
            train_command(tiny_model, judge_data, "max_steps=1"),
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        assert f"saves/judge/tiny/lora is being trained by PID {runner.pid}" in second.stderr
        assert f"llamafactory-cli PID {trainer}" in second.stderr

        runner.kill()  # kill -9 of the wrapper: the trainer must not outlive it
        runner.wait()
        deadline = time.monotonic() + 60
        while _alive(trainer):
            assert time.monotonic() < deadline, f"trainer {trainer} outlived its runner"
            time.sleep(0.2)
    finally:
        if runner.poll() is None:
            runner.kill()
        for pid in _pids(lock)[1:]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()

    # the newest checkpoint half-written, as a kill mid-save leaves it
    newest = max(
        (p for p in lora.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)),
        key=lambda p: int(p.name.split("-")[1]),
    )
    (newest / "trainer_state.json").unlink(missing_ok=True)
    weights = newest / "adapter_model.safetensors"
    if weights.is_file():
        weights.write_bytes(weights.read_bytes()[:100])
    step = int(newest.name.split("-")[1])
    secret = "hf_NOT_A_REAL_TOKEN_12345"
    log = (tmp_path / "c.log").open("w")
    rerun = subprocess.Popen(
        train_command(tiny_model, judge_data, "max_steps=100000", "save_steps=2", f"hf_hub_token={secret}"),
        cwd=tmp_path,
        env=ENV,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:  # it resumes below the broken checkpoint and saves past it; then SIGTERM, forwarded to its trainer
        deadline = time.monotonic() + 240
        while not ((lora / f"checkpoint-{step}" / "trainer_state.json").is_file() and len(_pids(lock)) == 2):
            assert rerun.poll() is None, (tmp_path / "c.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "c.log").read_text()[-3000:]
            time.sleep(0.3)
        trainer = _pids(lock)[1]
        rerun.send_signal(signal.SIGTERM)
        assert rerun.wait(timeout=120) == 128 + signal.SIGTERM
        assert not _alive(trainer)
    finally:
        if rerun.poll() is None:
            rerun.kill()
        log.close()
    output = (tmp_path / "c.log").read_text()
    assert f"skipped {newest.name} (no trainer_state.json); moved it to {newest.name}.broken" in output, output[-3000:]
    assert f"resuming from saves/judge/tiny/lora/checkpoint-{step - 2}" in output
    assert (lora / f"{newest.name}.broken").is_dir()  # kept, never deleted
    assert json.loads((lora / f"checkpoint-{step}" / "trainer_state.json").read_text())["global_step"] == step
    manifest = json.loads((lora / "manifest.json").read_text())
    assert manifest["status"] == "interrupted (SIGTERM)" and manifest["previous"]["status"] == "interrupted"
    # 5. the token reached nobody's disk: not in run.yaml, the manifest, or anything else the run wrote
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".yaml", ".json", ".jsonl", ".log")]
    assert [p for p in written if secret in p.read_text(errors="replace")] == []
    assert "hf_hub_token: '***'" in (lora / "run.yaml").read_text()
    assert manifest["overrides"]["hf_hub_token"] == "***"


def _fake_checkpoint(path: Path, complete: bool) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    path.mkdir(parents=True)
    save_file({"w": np.zeros(64, dtype=np.float32)}, str(path / "adapter_model.safetensors"))
    if complete:
        (path / "trainer_state.json").write_text("{}")
    else:
        data = (path / "adapter_model.safetensors").read_bytes()
        (path / "adapter_model.safetensors").write_bytes(data[: len(data) - 100])


def test_resume_skips_an_incomplete_checkpoint_and_keeps_it(tmp_path):
    from pipeline.checkpoints import prepare_train_dir

    out = tmp_path / "lora"
    _fake_checkpoint(out / "checkpoint-4", complete=True)
    _fake_checkpoint(out / "checkpoint-8", complete=False)
    overwrite, how = prepare_train_dir(out, fresh=False)
    assert not overwrite and how.startswith(f"resuming from {out / 'checkpoint-4'}")
    assert "skipped checkpoint-8 (no trainer_state.json)" in how
    assert (out / "checkpoint-8.broken" / "adapter_model.safetensors").is_file()  # moved aside, never deleted
    (out / "checkpoint-9").mkdir()
    (out / "checkpoint-9" / "trainer_state.json").write_text("{}")
    (out / "checkpoint-9" / "adapter_model.safetensors").write_bytes(b"\x10\x00")
    assert "skipped checkpoint-9 (adapter_model.safetensors is 2 bytes" in prepare_train_dir(out, fresh=False)[1]


def test_secret_keys_are_redacted_and_others_kept():
    from pipeline.manifest import redact

    config = {
        "hf_hub_token": "a",
        "ms_hub_token": "b",
        "om_hub_token": "c",
        "api_key": "d",
        "swanlab_api_key": "e",
        "db_password": "f",
        "client_secret": "g",
        "max_new_tokens": 5,
        "use_fast_tokenizer": True,
        "hf_hub_token_unset": None,
    }
    assert redact(config) == {
        **config,
        "hf_hub_token": "***",
        "ms_hub_token": "***",
        "om_hub_token": "***",
        "api_key": "***",
        "swanlab_api_key": "***",
        "db_password": "***",
        "client_secret": "***",
    }


# ---------------------------------------------------------------- pipeline pre-checks, before anything is written


def pipeline_main(monkeypatch, tmp_path, capsys, *argv: str) -> tuple[int, str]:
    from pipeline.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_qlora_has_its_own_folder_and_is_refused_before_writing_without_cuda(judge_data, tmp_path, capsys, monkeypatch):
    from pipeline.presets import resolve_config

    assert resolve_config("qwen2", "qlora", "judge", cuda=False)["output_dir"] == "saves/judge/qwen2/qlora"
    lora = tmp_path / "saves/judge/tiny/lora"
    lora.mkdir(parents=True)
    for name in ("run.yaml", "manifest.json", "adapter_model.safetensors"):
        (lora / name).write_text(name)
    monkeypatch.setattr("pipeline.presets.cuda_available", lambda: False)
    code, err = pipeline_main(monkeypatch, tmp_path, capsys, *tiny_args("qlora", "judge", data_dir=judge_data))
    assert code == 2 and "needs a CUDA GPU and bitsandbytes" in err
    assert {p.name: p.read_text() for p in lora.iterdir()} == {
        n: n for n in ("run.yaml", "manifest.json", "adapter_model.safetensors")
    }
    assert not (tmp_path / "saves/judge/tiny/qlora").exists()


@pytest.mark.parametrize("flag, value", [("--task", "../../x"), ("--model", "../factory_configs/tiny")])
def test_task_and_model_must_be_plain_names(flag, value, judge_data, tmp_path, capsys, monkeypatch):
    argv = {"--task": "judge", "--model": "tiny", flag: value}
    code, err = pipeline_main(
        monkeypatch,
        tmp_path,
        capsys,
        "train",
        "--model",
        argv["--model"],
        "--task",
        argv["--task"],
        "--data-dir",
        str(judge_data),
    )
    assert code == 2 and f"{flag} {value!r}: expected a plain name" in err
    assert list(tmp_path.iterdir()) == []


def test_override_types_are_checked_against_llamafactory(judge_data, tmp_path, capsys, monkeypatch):
    code, err = pipeline_main(
        monkeypatch, tmp_path, capsys, *tiny_args("train", "judge", "--dry-run", "max_steps=abc", data_dir=judge_data)
    )
    assert code == 2 and "max_steps is 'abc', expected an integer" in err
    code, _ = pipeline_main(
        monkeypatch,
        tmp_path,
        capsys,
        *tiny_args("train", "judge", "--dry-run", "learning_rate=5e-5", data_dir=judge_data),
    )
    assert code == 0  # YAML reads 5e-5 as text: converted to the float LLaMA-Factory needs


def test_predict_without_adapter_is_refused_first(judge_data, tmp_path, capsys, monkeypatch):
    code, err = pipeline_main(monkeypatch, tmp_path, capsys, *tiny_args("predict", "judge", data_dir=judge_data))
    assert code == 2 and "no trained adapter in saves/judge/tiny/lora" in err
    assert not (tmp_path / "saves").exists()


# ---------------------------------------------------------------- the Makefile passes values as single words


def test_makefile_quotes_user_values(tmp_path):
    marker = tmp_path / "pwned"
    spaced = tmp_path / "a folder"
    spaced.mkdir()
    train = judge_csv(spaced / "train.csv")
    # from the repo root with its own set-up stamp held old: the Makefile's default PY and LLMCOMP
    base = ["-s", "-o", ".venv/.installed", "data", "TASK=judge", f"TRAIN={train}", f"DATA_DIR={tmp_path / 'data'}"]
    base.append("DATA_ARGS=--tokenizer none")
    bad = run_make(ROOT, *base, f"NAME=x;touch {marker};", set_up=False, check=False)
    assert not marker.exists()
    assert bad.returncode != 0 and "--name 'x;touch" in bad.stderr
    good = run_make(ROOT, *base, "NAME=ok", set_up=False, check=False)
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "data" / "ok_train.json").is_file()


# ---------------------------------------------------------------- formula-safe CSVs for humans, raw in JSON


@pytest.mark.parametrize(
    "raw",
    ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "'=x", "''=y", "\tx", "-1", "+0.5", "'plain", "plain", ""],
)
def test_formula_cells_round_trip(raw):
    from core.fileio import formula_raw, formula_safe

    shown = formula_safe(raw)
    assert shown[:1] not in ("=", "+", "@", "\t") or raw in ("+0.5",)
    assert formula_raw(shown) == raw


def test_voted_and_submission_csvs_are_formula_safe(tmp_path, capsys):
    from voting.cli import main as voting_main
    from voting.predictions import read_csv_frame

    payload = '=HYPERLINK("http://evil","x")'
    for name in ("a", "b"):
        atomic_write_csv(
            tmp_path / f"{name}.csv", [{"id": "1", "prediction": payload}, {"id": "2", "prediction": "@cmd"}]
        )
    assert (tmp_path / "a.csv").read_text().splitlines()[1] == '1,"\'=HYPERLINK(""http://evil"",""x"")"'
    assert (
        voting_main(
            [
                "vote",
                str(tmp_path / "a.csv"),
                str(tmp_path / "b.csv"),
                "--text",
                "--tie-breaker",
                "a",
                "--out",
                str(tmp_path / "voted.csv"),
            ]
        )
        == 0
    ), capsys.readouterr().err
    voted = (tmp_path / "voted.csv").read_text()
    assert "'=HYPERLINK" in voted and "'@cmd" in voted and "\n=" not in voted and ",=" not in voted
    frame = read_csv_frame(tmp_path / "voted.csv", ("id", "prediction"))
    assert list(frame["prediction"]) == [payload, "@cmd"]  # our readers undo the quote: the text is exact

    from adapters.paper import write_submission

    write_submission(tmp_path / "submit.csv", [{"id": "1"}], {"1": "1"}, keywords={"1": "=1+1"})
    assert (tmp_path / "submit.csv").read_text().splitlines()[1] == "1,'=1+1,1"


# ---------------------------------------------------------------- bad input: encodings, XLSX, ids, groups, NUL


def test_undecodable_bytes_are_located_in_the_best_encoding(tmp_path, capsys):
    path = tmp_path / "train.csv"
    text = "数据编号,创作要求,评判维度,待评判内容,标注分值\r\nTR1,,流畅性,今天天气很好。,5\r\n"
    path.write_bytes(text.encode("gb18030") + b"TR2,,\xff\xfe,x,3\r\n")
    code, _, err = convert(capsys, "judge", tmp_path / "data", "--train", path)
    assert code == 2 and "line 3 (byte" in err and "GB18030" in err, err


def test_corrupted_xlsx_is_refused_cleanly(tmp_path, capsys):
    good = write_xlsx(tmp_path / "good.xlsx", [JUDGE_HEADER, *JUDGE_ROWS])
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data.replace(b"</sheetData>", b"</sheetDat>") if "sheet1" in item.filename else data)
    code, _, err = convert(capsys, "judge", tmp_path / "data", "--train", broken)
    assert code == 2 and "not a readable XLSX workbook" in err
    data = good.read_bytes()
    for position in range(0, len(data), max(1, len(data) // 40)):  # one flipped byte at 40 places
        flipped = tmp_path / "flipped.xlsx"
        flipped.write_bytes(data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :])
        code, _, err = convert(capsys, "judge", tmp_path / "data", "--train", flipped)  # no traceback, ever
        assert code in (0, 2) and (code == 0 or err.startswith("error: ")), (position, err)


def test_xlsx_formula_without_cached_value_and_merged_cells_are_refused(tmp_path, capsys):
    rows = [JUDGE_HEADER, *JUDGE_ROWS]
    formula = write_xlsx(tmp_path / "formula.xlsx", [rows[0], rows[1][:4] + ["=2+3"], *rows[2:]])
    code, _, err = convert(capsys, "judge", tmp_path / "data", "--train", formula)
    assert code == 2 and "row 2 column 标注分值 (E): formula without a cached value" in err, err

    cached = tmp_path / "cached.xlsx"  # as Excel saves it: the formula and its value
    with zipfile.ZipFile(formula) as src, zipfile.ZipFile(cached, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item).replace(b"<f>2+3</f><v></v>", b"<f>2+3</f><v>5</v>"))
    code, _, err = convert(capsys, "judge", tmp_path / "data", "--train", cached)
    assert code == 0, err
    first = json.loads((tmp_path / "data" / "t_train.json").read_text())[0]
    assert first["output"] == "5"

    import openpyxl

    workbook = openpyxl.load_workbook(write_xlsx(tmp_path / "merged.xlsx", rows))
    workbook.active.merge_cells("E2:E3")
    workbook.save(tmp_path / "merged.xlsx")
    code, _, err = convert(capsys, "judge", tmp_path / "data", "--train", tmp_path / "merged.xlsx")
    assert code == 2 and "row 2 column 标注分值 (E): merged cells E2:E3" in err, err


def test_nul_bytes_are_dropped_and_counted(tmp_path, capsys):
    rows = [[*JUDGE_ROWS[0][:3], "今天\x00天气\x00很好。", "5"], *JUDGE_ROWS[1:]]
    code, out, err = convert(capsys, "judge", tmp_path / "data", "--train", judge_csv(tmp_path / "t.csv", rows))
    assert code == 0, err
    records = json.loads((tmp_path / "data" / "t_train.json").read_text())
    assert records[0]["input"] == "今天天气很好。" and "\x00" not in json.dumps(records)
    report = json.loads((tmp_path / "data" / "t_report.json").read_text())
    assert report["datasets"]["t_train"]["nul_dropped"] == 2 and "nul_dropped: 2" in out


def test_duplicate_test_ids_are_refused(tmp_path, capsys):
    rows = [JUDGE_ROWS[0], JUDGE_ROWS[1], [JUDGE_ROWS[0][0], *JUDGE_ROWS[2][1:]]]
    code, _, err = convert(capsys, "judge", tmp_path / "data", "--test", judge_csv(tmp_path / "t.csv", rows))
    assert code == 2 and "duplicate ids in the test split" in err and "TR1 (records 0, 2)" in err
    assert not (tmp_path / "data").exists()


def test_vote_inputs_disagreeing_on_a_rows_group_are_refused(tmp_path, capsys):
    from voting.cli import main as voting_main

    atomic_write_csv(
        tmp_path / "a.csv",
        [{"id": "1", "prediction": "5", "dimension": "流畅性"}, {"id": "2", "prediction": "3", "dimension": "规范性"}],
    )
    atomic_write_csv(
        tmp_path / "b.csv",
        [{"id": "2", "prediction": "3", "dimension": "流畅性"}, {"id": "1", "prediction": "4", "dimension": "流畅性"}],
    )
    code = voting_main(
        [
            "vote",
            str(tmp_path / "a.csv"),
            str(tmp_path / "b.csv"),
            "--task",
            "judge",
            "--tie-breaker",
            "a",
            "--out",
            str(tmp_path / "voted.csv"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "id 2:" in err and "'规范性'" in err and "'流畅性'" in err
    assert not (tmp_path / "voted.csv").exists()


# ---------------------------------------------------------------- writes: one-line errors, the user's umask


def test_unwritable_outputs_give_one_line_naming_the_path(tmp_path, capsys):
    source = judge_csv(tmp_path / "t.csv")
    code, _, err = convert(capsys, "judge", tmp_path / "data", "--train", source, name="n" * 300)
    assert code == 2 and "--name nnnn" in err and "300 characters" in err and "Traceback" not in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = convert(capsys, "judge", blocker / "data", "--train", source)
    assert code == 2 and str(blocker) in err and len(err.strip().splitlines()) == 2  # the error, "nothing written"
    long_dir = tmp_path / ("d" * 300)
    code, _, err = convert(capsys, "judge", long_dir, "--train", source)
    assert code == 2 and "too long" in err.lower() and len(err.strip().splitlines()) == 2
    if os.geteuid() != 0:  # root writes into read-only folders
        readonly = tmp_path / "ro"
        readonly.mkdir(mode=0o555)
        code, _, err = convert(capsys, "judge", readonly, "--train", source)
        assert code == 2 and "Permission denied" in err and str(readonly) in err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_csv(tmp_path / "x.csv", [{"id": "1"}])
    finally:
        os.umask(previous)
    assert (tmp_path / "x.csv").stat().st_mode & 0o777 == mode


def test_check_plain_name_rejects_paths():
    from core.paths import predictions_csv

    with pytest.raises(InputError):
        predictions_csv("../x", "m")
    assert str(predictions_csv("judge", "qwen2")) == "predictions/judge/qwen2.csv"


# ---------------------------------------------------------------- the API server: every route behind the key


def test_api_docs_are_off_and_routes_need_the_key(monkeypatch):
    from fastapi.testclient import TestClient

    from pipeline.serve import server_app

    monkeypatch.setenv("API_KEY", "k")

    class Engine:
        name = "huggingface"
        can_generate = True

    class Chat:
        engine = Engine()

    client = TestClient(server_app(Chat()))
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 404, path
        assert client.get(path, headers={"Authorization": "Bearer k"}).status_code == 404, path
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer k"}).status_code == 200
