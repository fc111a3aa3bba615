"""What several test files share: the subprocess environment, a free port, the one make runner, the one spelling of
a tiny-preset run, and toy CoLA-like records. Fixtures built from these live in conftest.py.

Imported as `from helpers import ...` (pytest puts tests/ on sys.path: it has no __init__.py).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def subprocess_env(**extra: str) -> dict[str, str]:
    """os.environ with this checkout's code on PYTHONPATH and LLaMA-Factory's version check off, plus `extra`."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "DISABLE_VERSION_CHECK": "1", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- make


def make_command(cwd: Path, *args: str, set_up: bool = True) -> list[str]:
    """`make ARGS` on this checkout's Makefile, run from `cwd`.

    set_up: `make setup` counts as done in `cwd` (cwd/stamp is the set-up stamp, held old with -o; cwd/smollm2.stamp
    stands for both embedded models: tests use models/tiny) and this interpreter is PY and LLMCOMP.
    """
    command = ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), *args]
    if set_up:
        stamp = cwd / "stamp"
        stamp.touch()
        (cwd / "smollm2.stamp").touch()
        command += [
            f"STAMP={stamp}",
            "-o",
            str(stamp),
            f"SMOLLM2={cwd / 'smollm2.stamp'}",
            f"GEMMA3={cwd / 'smollm2.stamp'}",
            f"PY={sys.executable}",
            f"LLMCOMP={Path(sys.executable).with_name('llmcomp')}",
        ]
    return command


def run_make(
    cwd: Path,
    *args: str,
    set_up: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """A real make target run from `cwd` (see make_command), this checkout's code in the subprocesses.

    check: assert it exited 0 (the output's tail is the message)."""
    proc = subprocess.run(
        make_command(cwd, *args, set_up=set_up),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(**(env or {})),
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# ---------------------------------------------------------------- the tiny preset through `python -m pipeline`

# a few fast optimizer steps on 2 cores
FAST_TRAIN = ("per_device_train_batch_size=4", "logging_steps=1")


def tiny_args(
    stage: str, task: str, *extra: str | Path, model: Path | None = None, data_dir: Path | None = None
) -> list[str]:
    """The argv of `python -m pipeline STAGE` on the tiny preset:
    `STAGE --model tiny --task TASK [--data-dir DATA] [model_name_or_path=MODEL] EXTRA...`.

    EXTRA: flags and key=value overrides, in any order (the CLI parses them intermixed)."""
    args = [stage, "--model", "tiny", "--task", task]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    if model is not None:
        args.append(f"model_name_or_path={model}")
    return args + [str(e) for e in extra]


def tiny_command(
    stage: str, task: str, *extra: str | Path, model: Path | None = None, data_dir: Path | None = None
) -> list[str]:
    """`python -m pipeline` with tiny_args, as a subprocess command."""
    return [sys.executable, "-m", "pipeline", *tiny_args(stage, task, *extra, model=model, data_dir=data_dir)]


def run_tiny(
    stage: str,
    task: str,
    *extra: str | Path,
    cwd: Path,
    model: Path | None = None,
    data_dir: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run tiny_command from `cwd` and assert it exited 0 (the output's tail is the message)."""
    result = subprocess.run(
        tiny_command(stage, task, *extra, model=model, data_dir=data_dir),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(**(env or {})),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def convert_judge_sample(data_dir: Path, name: str = "judge") -> Path:
    """The embedded judge sample (train and test) through the real adapter CLI into `data_dir`."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "adapters",
            "judge",
            "--train",
            str(SAMPLES / "judge_train.csv"),
            "--test",
            str(SAMPLES / "judge_test.csv"),
            "--name",
            name,
            "--data-dir",
            str(data_dir),
            "--tokenizer",
            "none",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        check=True,
        capture_output=True,
    )
    return data_dir


# ---------------------------------------------------------------- raw competition files (judge), converted in-process

JUDGE_HEADER = ["数据编号", "创作要求", "评判维度", "待评判内容", "标注分值"]
JUDGE_ROWS = [
    ["TR1", "", "流畅性", "今天天气很好，我们去公园散步。", "5"],
    ["TR2", "请以“秋天”为主题写一篇文章", "规范性", "秋天到了，树叶黄了。", "3"],
    ["TR3", "水的沸点是____ A、90℃ B、100℃", "选择题", "正确选项为B 模型回复为A", "0"],
    ["TR4", "请以“冬天”为主题写一篇文章", "规范性", "", "1"],
]


def write_csv(path: Path, rows: list[list[str]], encoding: str = "gb18030", header: list[str] | None = None) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(([header] if header else []) + rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    workbook.save(path)
    return path


def convert(capsys, task: str, data_dir: Path, *args: object, name: str = "t") -> tuple[int, str, str]:
    from adapters.cli import main

    code = main([task, *map(str, args), "--name", name, "--data-dir", str(data_dir), "--tokenizer", "none"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def load(data_dir: Path, dataset: str) -> list[dict]:
    return json.loads((data_dir / f"{dataset}.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- toy data (CoLA-like)

INSTRUCTION = "Is this sentence grammatically acceptable? Answer 1 for yes, 0 for no."
WORDS = (
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "dog",
    "ran",
    "fast",
    "slow",
    "big",
    "small",
    "red",
    "blue",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
)


def toy_records(
    n: int,
    split: str,
    seed: int,
    words: Iterable[str] = WORDS,
    length: tuple[int, int] = (2, 14),
    even: bool = False,
) -> list[dict]:
    """n alpaca records of `length` random words, ids SPLIT-i; labels "1" 70% of the time (even: 50%)."""
    rng = random.Random(seed)
    words = tuple(words)
    return [
        {
            "id": f"{split}-{i}",
            "instruction": INSTRUCTION,
            "input": " ".join(rng.choice(words) for _ in range(rng.randint(*length))),
            "output": str(rng.randint(0, 1)) if even else ("1" if rng.random() < 0.7 else "0"),
        }
        for i in range(n)
    ]


def write_dataset(data_dir: Path, name: str, records: list[dict], task: str = "cola") -> None:
    """What the adapters write: the records, and their entry (with the task) in dataset_info.json."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / f"{name}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    info_path = data_dir / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    info[name] = {
        "file_name": f"{name}.json",
        "formatting": "alpaca",
        "columns": {"prompt": "instruction", "query": "input", "response": "output"},
        "task": task,
    }
    info_path.write_text(json.dumps(info), encoding="utf-8")


def train_tiny_lora(tiny_model: Path, base: Path) -> dict[str, Path]:
    """Data (cola_toy_{train,dev,test}) and a LoRA adapter trained on it with `python -m pipeline train`, under
    `base`; a run already there is reused."""
    run = {"model": tiny_model, "data": base / "data", "adapter": base / "lora", "out": base}
    if (run["adapter"] / "adapter_model.safetensors").is_file():
        return run
    for split, n, seed in (("train", 48, 0), ("dev", 12, 1), ("test", 12, 2)):
        write_dataset(run["data"], f"cola_toy_{split}", toy_records(n, split, seed))
    run_tiny(
        "train",
        "cola_toy",
        f"dataset_dir={run['data']}",
        f"output_dir={run['adapter']}",
        "max_steps=3",
        "save_steps=100",
        "plot_loss=false",
        cwd=ROOT,
        model=tiny_model,
        timeout=600,
    )
    return run
