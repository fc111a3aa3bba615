"""pipeline/ as rooms (#20): every file one job and short, every `main` a few lines that parse and call, and every
stage reads the data folder it is given (`--data-dir`, make's DATA_DIR=), not data/."""

from __future__ import annotations

import ast
import csv
import json
import os
from pathlib import Path

import pytest
import yaml
from helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "adapters", "pipeline", "voting", "llmcomp", "tools")
MAX_PIPELINE_LINES = 450
MAX_MAIN_LINES = 25


def test_no_pipeline_file_over_450_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "pipeline").glob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_PIPELINE_LINES
    }
    assert not long, f"over {MAX_PIPELINE_LINES} lines (split along the seam): {long}"


def test_every_main_parses_and_calls_in_a_few_lines():
    too_long = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            text = path.read_text(encoding="utf-8")
            if path.name == "__main__.py" and len(text.splitlines()) > MAX_MAIN_LINES:
                too_long[str(path.relative_to(ROOT))] = len(text.splitlines())
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef) and node.name == "main":
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > MAX_MAIN_LINES:
                        too_long[f"{path.relative_to(ROOT)}:main"] = length
    assert not too_long, f"longer than {MAX_MAIN_LINES} lines: {too_long}"


def test_no_stage_imports_a_package_for_its_side_effects():
    """The registries fill themselves: nobody writes `import adapters` to get the built-in tasks registered."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import) and any(alias.name == "adapters" for alias in node.names):
                    found.append(str(path.relative_to(ROOT)))
    assert not found
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "import sys, adapters" not in makefile and "import adapters" not in makefile


def test_the_task_registry_fills_itself_in_a_fresh_process():
    import subprocess
    import sys

    code = "from core.tasks import get_task, find_task; print(get_task('judge').group_col, find_task('cola').name)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["dimension", "cola"]


# ---------------------------------------------------------------- --data-dir reaches every stage


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> Path:
    """A working folder with no data/ and the judge sample converted into its `mydata/` as dataset `jd`."""
    from adapters.cli import main as adapters_main

    work = tmp_path_factory.mktemp("rooms")
    samples = ROOT / "data" / "samples"
    argv = ["judge", "--train", str(samples / "judge_train.csv"), "--test", str(samples / "judge_test.csv")]
    assert adapters_main([*argv, "--task", "jd", "--data-dir", str(work / "mydata"), "--tokenizer", "none"]) == 0
    return work


@pytest.fixture
def in_elsewhere(elsewhere, monkeypatch) -> Path:
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("API_KEY", "test-key")
    assert not (elsewhere / "data").exists()  # a stage that read data/ would find nothing
    return elsewhere


@pytest.mark.parametrize("stage", ["train", "predict", "export"])
def test_train_predict_export_read_the_data_dir(in_elsewhere, capsys, stage):
    from pipeline.cli import main

    assert main([stage, "--task", "jd", "--data-dir", "mydata", "--dry-run"]) == 0
    out = capsys.readouterr().out
    # no --model: the default is the recorded task's (judge: Chinese → gemma3), found in mydata/, not data/
    assert f"[{stage}] gemma3 on jd" in out
    if stage != "export":
        assert "dataset_dir: mydata" in out


def test_label_scoring_reads_the_data_dir(in_elsewhere, capsys, tiny_model):
    from pipeline.score import main

    argv = ["--model", "tiny", "--task", "jd", "--data-dir", "mydata", "--limit", "2"]
    assert main([*argv, f"model_name_or_path={tiny_model}", "adapter_name_or_path="]) == 0, capsys.readouterr().err
    trial = in_elsewhere / "predictions" / "jd" / "test-limit2" / "tiny_score.csv"
    rows = list(csv.DictReader(trial.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == ["TE0001", "TE0005"]  # LIMIT=2: the first rows of two dimensions


def test_baseline_reads_the_data_dir(in_elsewhere, capsys):
    from pipeline.baseline import main

    assert main(["--task", "jd", "--data-dir", "mydata", "--limit", "3"]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader((in_elsewhere / "predictions/jd/test-limit3/tfidf.csv").open(encoding="utf-8")))
    assert len(rows) == 3 and "LIMIT=3" in capsys.readouterr().out


def test_serve_records_the_data_dir(in_elsewhere, capsys):
    from pipeline.serve import main

    argv = ["--task", "jd", "--data-dir", "mydata", "--dry-run", "adapter_name_or_path="]  # no adapter trained
    assert main(argv) == 0, capsys.readouterr().err
    recorded = yaml.safe_load((in_elsewhere / "saves/jd/gemma3/serve/run.yaml").read_text(encoding="utf-8"))
    assert recorded["dataset_dir"] == "mydata" and recorded["eval_dataset"] == "jd_test"


@pytest.mark.parametrize("command", ["chat", "webchat"])
def test_chat_and_webchat_take_the_data_dir(in_elsewhere, capsys, command):
    from pipeline.board import main

    assert main([command, "--task", "jd", "--data-dir", "mydata", "--dry-run"]) == 0, capsys.readouterr().err
    assert "models/gemma3" in capsys.readouterr().out  # the recorded task's default model, read from mydata/


def test_board_preset_takes_the_data_dir(in_elsewhere, capsys):
    from pipeline.board import main

    code = main(["preset", "--model", "tiny", "--task", "jd", "--data-dir", "mydata", "--workdir", str(in_elsewhere)])
    assert code == 0, capsys.readouterr().err
    preset = yaml.safe_load((in_elsewhere / "llamaboard_config" / "tiny_jd.yaml").read_text(encoding="utf-8"))
    assert preset["train.dataset_dir"] == "mydata"


def test_self_consistency_reads_the_data_dir(in_elsewhere, capsys):
    from pipeline.self_consistency import main

    argv = ["--model", "tiny", "--task", "jd", "--data-dir", "mydata", "--port", str(free_port()), "--wait", "0.5"]
    assert main(argv) == 2
    assert "no server answered" in capsys.readouterr().err  # the records were read from mydata/ first


def test_voting_reads_the_data_dir(in_elsewhere, capsys):
    from voting.cli import main

    test = json.loads((in_elsewhere / "mydata" / "jd_test.json").read_text(encoding="utf-8"))
    pred = in_elsewhere / "pred.csv"
    with pred.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prediction", "dimension"])
        writer.writerows([r["id"], "1" if r["dimension"] == "选择题" else "3", r["dimension"]] for r in test)
    out = in_elsewhere / "sub"
    argv = ["--pred", str(pred), "--test", "mydata/jd_test.json", "--out", f"{out}{os.sep}"]
    assert main(["submit", "--task", "jd", "--data-dir", "mydata", *argv]) == 0, capsys.readouterr().err
    assert (out / "submit.csv").is_file()  # jd is the judge task: its submission file
    assert main(["submit", "--task", "jd", *argv]) == 2  # data/ holds no jd: the task is unknown there
    assert "unknown task 'jd'" in capsys.readouterr().err
