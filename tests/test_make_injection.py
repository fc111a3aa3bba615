"""Issue #21: no make variable's value reaches a shell as code, while the Makefile is read or in any recipe.

Every target of the Makefile runs for real in a temporary copy where `.venv/bin/python`, `llmcomp`, `ruff` and `mypy` are a
recorder (a few lines of sh that log their arguments), with every variable the Makefile names set at once to one
payload each: `;`, `$(shell ...)`, `$(...)`, backticks, quotes and `$x`. Nothing may run (no marker file appears),
and where a value reaches a command it arrives as written. The audit's own `make -n` commands, and a few real runs
of the CLIs that fail early, complete it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "Makefile"
# commands and install paths by design: the test harness and `make setup` point them at programs
TOOLS = {"PYTHON", "PY", "VENV", "LLMCOMP", "STAMP", "SMOLLM2", "TINY", "GEMMA3", "SHELL", "MAKE", "MAKEFILE_LIST"}
SPLIT = {"ARGS", "DATA_ARGS", "SEED_MODELS", "MODELS", "TIE_ONLY"}  # lists: one argument per blank-separated word
RECORDER = """#!/bin/sh
printf '%s\\0' "$#" "$0" "$@" >> "$RECORD_TO"
if [ "$1" = "-c" ]; then echo smollm2; fi
"""


def payloads(marker: Path) -> list[str]:
    return [
        f"x;touch {marker};",
        f"$(shell touch {marker})x",
        f"`touch {marker}`",
        f"'\";touch {marker};\"'",
        f"a$bc$(touch {marker})",
        f"x' ; touch {marker} ; '",
        f"$$(touch {marker})",
    ]


PAYLOADS = len(payloads(Path("m")))


def makefile_variables() -> list[str]:
    text = MAKEFILE.read_text(encoding="utf-8")
    names = set(re.findall(r"^(?:export |override )?([A-Z][A-Z0-9_]*) *(?:\?=|:=|=)", text, re.MULTILINE))
    names |= set(re.findall(r"\$\(([A-Z][A-Z0-9_]*)\)", text))
    return sorted(names - TOOLS)


def makefile_targets() -> list[str]:
    text = MAKEFILE.read_text(encoding="utf-8")
    return sorted(set(re.findall(r"^([a-z][a-z-]*):", text, re.MULTILINE)))


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The Makefile in a folder of its own, its tools replaced by the recorder, set-up counted as done."""
    work = tmp_path_factory.mktemp("make-copy")
    shutil.copy(MAKEFILE, work / "Makefile")
    for name in ("pyproject.toml", "constraints.txt"):
        (work / name).write_text("")
    (work / ".venv" / "bin").mkdir(parents=True)
    for tool in ("python", "llmcomp", "ruff", "mypy"):
        path = work / ".venv" / "bin" / tool
        path.write_text(RECORDER)
        path.chmod(0o755)
    for stamp in (".venv/.installed", "models/smollm2/config.json", "models/gemma3/config.json"):
        (work / stamp).parent.mkdir(parents=True, exist_ok=True)
        (work / stamp).touch()
    (work / "models/tiny").mkdir()
    (work / "models/tiny/config.json").touch()
    (work / "pwned").mkdir()
    return work


def recorded_calls(log: Path) -> list[list[str]]:
    if not log.is_file():
        return []
    items = log.read_bytes().decode().split("\0")
    calls, i = [], 0
    while i < len(items) - 1:
        count = int(items[i])
        calls.append(items[i + 1 : i + 2 + count])
        i += 2 + count
    return calls


def run_make(copy: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """make in the copy, its tools logging to `log`."""
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RECORD_TO": str(log), **(env or {})},
    )


# targets that need one value to be plain to reach the rest of their recipe; a variable left out runs its default
VARIANTS: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    ("predict", {"MODE": "score"}, ()),
    ("convert", {"MODEL": "internlm2_5"}, ()),
    ("submit-paper", {}, ("TASK",)),  # NAME flows into TASK (NAME_cls) and KEYWORDS
    ("train", {}, ("MODEL",)),  # the default-model lookup at parse time gets TASK and DATA_DIR
    ("vote", {}, ("MODEL",)),
    ("setup", {"-W": "pyproject.toml"}, ()),  # the venv's recipe runs (EXTRAS)
]
# targets whose recipes call no tool, or nothing while the copy's set-up is up to date
UP_TO_DATE = [(target, {}) for target in ("help", "clean", "models", "setup")]
CASES = [(target, {}, ()) for target in makefile_targets()] + VARIANTS


def walk(copy: Path, target: str, fixed: dict[str, str], dropped: tuple[str, ...], index: int) -> list[str]:
    """One make run of `target` with every variable set to payload `index`: the problems found."""
    tag = f"{target}-{'-'.join(fixed) or 'all'}-{'-'.join(dropped)}-{index}"
    values = {
        name: payloads(copy / "pwned" / f"{name}.{tag}")[index]
        for name in makefile_variables()
        if name not in dropped and name not in fixed
    }
    flags = [f"{key} {value}".split() if key.startswith("-") else [f"{key}={value}"] for key, value in fixed.items()]
    log = copy / f"calls.{tag}"
    proc = run_make(
        copy, log, target, *[word for flag in flags for word in flag], *[f"{k}={v}" for k, v in values.items()]
    )
    problems = []
    expected_failure = target == "convert" and "MODEL" not in fixed  # only MODEL=internlm2_5 is converted
    if proc.returncode != 0 and not expected_failure:
        problems.append(f"{tag}: exit {proc.returncode}: {proc.stderr[-500:]}")
    calls = recorded_calls(log)
    if not calls and (target, fixed) not in UP_TO_DATE and not expected_failure:
        problems.append(f"{tag}: no command ran")
    for call in calls:
        joined = " ".join(call)
        for name, value in values.items():
            marker = f"pwned/{name}.{tag}"
            whole = next(word for word in value.split() if marker in word) if name in SPLIT else value
            if marker in joined and whole not in joined:
                problems.append(f"{tag}: {name} arrived rewritten: {joined[:300]}")
    return problems


def test_every_variable_of_every_target_is_text(copy):
    assert {"TASK", "MODEL", "DATA_DIR", "LIMIT", "ARGS", "OUT", "SRC", "HOST", "PORT", "SEED_MODELS"} <= set(
        makefile_variables()
    )
    jobs = [(t, f, d, i) for t, f, d in CASES for i in range(PAYLOADS)]
    with ThreadPoolExecutor(4) as pool:
        problems = [p for found in pool.map(lambda job: walk(copy, *job), jobs) for p in found]
    assert sorted(p.name for p in (copy / "pwned").iterdir()) == []
    assert problems == []


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "train", "TASK=x;touch {m};"],
        ["-n", "predict", "TASK=x", "DATA_DIR=d;touch {m};"],
        ["-n", "serve", "TASK=x$$(touch {m})"],
        ["-n", "vote", "TASK=$(shell touch {m})x"],
        ["-n", "train-all", "SEED_MODELS=a$(shell touch {m})"],
        ["-n", "train", "q=$(shell touch {m})"],
        ["-n", "vote", "VOTE_ARGS=$(shell touch {m})"],
    ],
)
def test_the_audits_make_n_commands_run_nothing(copy, tmp_path, args):
    """make -n runs what is read at parse time and recipe expansions; the recipes themselves the walk above runs."""
    marker = tmp_path / "pwned"
    run_make(copy, tmp_path / "calls", *[a.format(m=marker) for a in args])
    assert not marker.exists()


def test_a_value_from_the_environment_is_text_too(copy, tmp_path):
    marker = tmp_path / "pwned"
    log = tmp_path / "calls"
    proc = run_make(copy, log, "vote", env={"TASK": f"$(shell touch {marker})x", "WEIGHTS": f"`touch {marker}`"})
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert any(f"$(shell touch {marker})x" in call for call in recorded_calls(log))


def test_the_echoed_command_holds_no_args(copy, tmp_path):
    """ARGS travel in the environment: a token in them is not printed with the command (make -n included)."""
    for flags in ([], ["-n"]):
        proc = run_make(copy, tmp_path / "calls", *flags, "train", "MODEL=tiny", "ARGS=hub_token=hf_SECRETxyz")
        assert proc.returncode == 0 and "hf_SECRETxyz" not in proc.stdout + proc.stderr
    assert recorded_calls(tmp_path / "calls")[0][-1:] == ["hub_token=hf_SECRETxyz"]


# ---------------------------------------------------------------- real runs of the CLIs behind make


def real_make(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "stamp").touch()
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(MAKEFILE), *args, f"STAMP={tmp_path / 'stamp'}"]
        + ["-o", str(tmp_path / "stamp"), f"PY={sys.executable}", f"LLMCOMP={sys.executable} -m llmcomp"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DISABLE_VERSION_CHECK": "1"},
    )


def test_a_failed_step_fails_make_and_runs_nothing_after(tmp_path):
    marker = tmp_path / "pwned"
    train = tmp_path / "train.csv"
    shutil.copy(ROOT / "data/samples/judge_train.csv", train)
    proc = real_make(
        tmp_path, "data", "TASK=judge", f"TRAIN={train}", f"LIMIT=1;touch {marker};", "DATA_ARGS=--tokenizer none"
    )
    assert proc.returncode != 0 and "--limit" in proc.stderr
    assert not marker.exists()


def test_a_dollar_in_a_path_is_kept(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    shutil.copy(ROOT / "data/samples/judge_train.csv", folder / "a$bc.csv")
    proc = real_make(tmp_path, "data", "TASK=judge", "TRAIN=d/a$bc.csv", "DATA_DIR=out", "DATA_ARGS=--tokenizer none")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "judge_train.json").is_file()


def test_a_shell_call_in_a_task_is_refused_as_a_name(tmp_path):
    marker = tmp_path / "pwned"
    proc = real_make(tmp_path, "vote", f"TASK=$(shell touch {marker})x")
    assert proc.returncode != 0 and not marker.exists()
