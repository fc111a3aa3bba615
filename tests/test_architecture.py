"""The house reads as the flow: imports run one way, a competition is one module, every flag takes effect."""

from __future__ import annotations

import ast
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_make, subprocess_env, tiny_command

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "adapters", "pipeline", "voting", "llmcomp")
# who may import whom (statically): the bottom layer imports none of ours; later stages read earlier ones' code
ALLOWED = {
    "core": set(),
    "adapters": {"core"},
    "pipeline": {"core", "adapters"},
    "voting": {"core", "adapters"},
    "llmcomp": set(),  # the front door dispatches by module name, at call time
}


def imports_of(package: str) -> dict[str, set[tuple[str, str]]]:
    """{other package: {(importing file, imported module)}} over every module of `package`."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    found.setdefault(top, set()).add((str(path.relative_to(ROOT)), name))
    return found


def test_imports_run_one_way_only():
    for package, allowed in ALLOWED.items():
        wrong = {other: sorted(where) for other, where in imports_of(package).items() if other not in allowed}
        assert not wrong, f"{package} imports {wrong}"


def test_no_package_imports_a_siblings_cli():
    for package in PACKAGES:
        for other, where in imports_of(package).items():
            assert not [w for w in where if w[1].endswith("__main__")], f"{package} imports {other}'s CLI: {where}"


def test_the_front_door_names_real_stage_mains():
    import importlib

    from llmcomp.cli import COMMANDS

    for command, (module, _) in COMMANDS.items():
        assert callable(importlib.import_module(module).main), command


def test_llmcomp_console_script_runs_a_stage(tmp_path):
    llmcomp = Path(sys.executable).with_name("llmcomp")
    if not llmcomp.exists():
        pytest.skip(f"{llmcomp} not installed: run make setup (pip install -e .)")
    proc = subprocess.run([str(llmcomp), "vote", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--tie-breaker" in proc.stdout
    proc = subprocess.run([str(llmcomp), "nonsense"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown subcommand" in proc.stderr


# ---------------------------------------------------------------- a new competition is one module


def test_a_toy_competition_takes_one_adapter_and_one_register_task(tmp_path, capsys):
    """Register a converter and a TaskSpec (with its submission writer); every stage then knows the task."""
    import adapters
    from adapters.cli import main as adapters_main
    from adapters.readers import read_table
    from adapters.records import Part, build_records, output_label
    from core.fileio import atomic_write_text
    from core.tasks import TASKS, TaskSpec, register_task
    from voting.cli import main as voting_main

    def convert(path, split, args):
        table = read_table(path)
        records, skipped = build_records(
            table.dicts(table.require(["key", "text"], ["colour"])),
            lambda row: {
                "id": row["key"],
                "instruction": "Colour?",
                "input": row["text"],
                "output": row.get("colour", ""),
            },
            table.where,
        )
        return [Part(split, path, records, len(table.rows), skipped, label_of=output_label)]

    def write(path, records, labels, **_):
        atomic_write_text(path, "".join(f"{r['id']}={labels[r['id']]}\n" for r in records))
        return {"rows": len(records)}

    adapters.register_adapter("toy", convert, "toy colours")
    register_task(TaskSpec("toy", ("red", "blue"), {"rouge": "red"}, submission_name="toy.txt", write_submission=write))
    try:
        (tmp_path / "train.csv").write_text("key,text,colour\na,sky,blue\nb,rose,red\n", encoding="utf-8")
        (tmp_path / "test.csv").write_text("key,text\nc,sea\nd,fire\n", encoding="utf-8")
        data = tmp_path / "data"
        assert (
            adapters_main(
                [
                    "toy",
                    "--train",
                    str(tmp_path / "train.csv"),
                    "--test",
                    str(tmp_path / "test.csv"),
                    "--name",
                    "colours",
                    "--data-dir",
                    str(data),
                    "--tokenizer",
                    "none",
                ]
            )
            == 0
        )
        assert json.loads((data / "dataset_info.json").read_text())["colours_test"]["task"] == "toy"
        a = tmp_path / "a.csv"
        b = tmp_path / "b.csv"
        a.write_text("id,prediction\nc,blue\nd,Rouge\n", encoding="utf-8")  # a synonym of the spec
        b.write_text("id,prediction\nc,blue\nd,blue\n", encoding="utf-8")
        voted = tmp_path / "voted.csv"
        capsys.readouterr()
        # the dataset's name finds the task: no --labels, no name rule
        assert (
            voting_main(
                [
                    "vote",
                    str(a),
                    str(b),
                    "--task",
                    "colours",
                    "--data-dir",
                    str(data),
                    "--tie-breaker",
                    "a",
                    "--out",
                    str(voted),
                ]
            )
            == 0
        )
        with voted.open(encoding="utf-8") as handle:
            assert [row["prediction"] for row in csv.DictReader(handle)] == ["blue", "red"]
        assert (
            voting_main(
                [
                    "submit",
                    "colours",
                    "--data-dir",
                    str(data),
                    "--pred",
                    str(voted),
                    "--test",
                    str(data / "colours_test.json"),
                    "--out",
                    str(tmp_path / "out/"),
                ]
            )
            == 0
        )
        assert (tmp_path / "out" / "toy.txt").read_text() == "c=blue\nd=red\n"
    finally:
        adapters.ADAPTERS.pop("toy", None)
        TASKS.pop("toy", None)


# ---------------------------------------------------------------- flags that always take effect


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory) -> Path:
    """The demo's judge sample converted into a folder of its own (not data/)."""
    from adapters.cli import main as adapters_main

    data = tmp_path_factory.mktemp("flags") / "mydata"
    samples = ROOT / "data" / "samples"
    assert (
        adapters_main(
            [
                "judge",
                "--train",
                str(samples / "judge_train.csv"),
                "--test",
                str(samples / "judge_test.csv"),
                "--name",
                "jd",
                "--data-dir",
                str(data),
                "--tokenizer",
                "none",
            ]
        )
        == 0
    )
    # a dev split too, so that SPLIT=dev has something different to read
    assert (
        adapters_main(
            [
                "judge",
                "--dev",
                str(samples / "judge_train.csv"),
                "--name",
                "jd",
                "--data-dir",
                str(data),
                "--tokenizer",
                "none",
            ]
        )
        == 0
    )
    return data


def test_data_dir_reaches_every_stage(sample_data):
    from pipeline.presets import resolve_config

    for stage in ("train", "predict"):
        assert resolve_config("tiny", stage, "jd", data_dir=sample_data)["dataset_dir"] == str(sample_data)
    from pipeline.errors import RunError

    with pytest.raises(RunError, match="disagree"):
        resolve_config("tiny", "train", "jd", {"dataset_dir": "elsewhere"}, data_dir=sample_data)
    proc = subprocess.run(
        tiny_command("train", "jd", "--dry-run", data_dir=sample_data),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=subprocess_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"dataset_dir: {sample_data}" in proc.stdout


def test_make_baseline_and_vote_take_split_and_data_dir(sample_data, tmp_path):
    work = tmp_path  # run from a folder of its own (outputs land there), set-up counting as done
    make = ["DATA_DIR=" + str(sample_data), "TASK=jd"]
    proc = run_make(work, "baseline", "SPLIT=dev", *make, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "predictions of dev" in proc.stdout
    rows = list(csv.DictReader((work / "predictions" / "jd" / "tfidf.csv").open(encoding="utf-8")))
    dev_ids = [r["id"] for r in json.loads((sample_data / "jd_dev.json").read_text(encoding="utf-8"))]
    assert [r["id"] for r in rows] == dev_ids  # the dev split, not test
    # the report's gold is the same split: the vote finds the judge task from the dataset itself
    proc = run_make(work, "report", "SPLIT=dev", "TIE=tfidf", *make, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (work / "submissions" / "jd" / "report" / "report.json").is_file()


def test_make_passes_split_samples_and_data_args(tmp_path):
    """What make would run (make -n): SPLIT reaches label scoring, SAMPLES the sampler, DATA_ARGS the adapters."""
    stamp = [f"STAMP={tmp_path / 'stamp'}", f"SMOLLM2={tmp_path / 'stamp'}"]
    (tmp_path / "stamp").touch()

    def dry_run(*args: str) -> str:  # from the repo root: the Makefile's own PY
        return run_make(ROOT, "-n", *args, *stamp, set_up=False, check=False).stdout

    score = dry_run("predict", "MODE=score", "SPLIT=dev", "TASK=jd")
    assert "score --model 'smollm2' --task 'jd' --split 'dev'" in score  # every user value quoted (#12)
    sampled = dry_run("sc", "SAMPLES=3", "TASK=logic")
    assert "--samples '3'" in sampled
    data = dry_run("data", "TASK=judge", "TRAIN=a.csv", "DATA_ARGS=--fit-cutoff", "ARGS=lr=1")
    assert "--fit-cutoff" in data and "lr=1" not in data  # ARGS are LLaMA-Factory overrides, not adapter flags
