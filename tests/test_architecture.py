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


# ---------------------------------------------------------------- no import circle, inside a package or across


CYCLE_PACKAGES = (*PACKAGES, "tools")


def module_files(root: Path = ROOT, packages: tuple[str, ...] = CYCLE_PACKAGES) -> dict[str, Path]:
    """{dotted module name: file} of every module of `packages` (a package is its __init__.py)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST):
    """Every import statement under `node`, functions and classes included, `if TYPE_CHECKING:` bodies left out."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif _type_checking_only(child):
            for other in child.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _import_nodes(child)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """{module: the modules of `modules` it imports}. `import a.b` and `from a import b` (b a submodule) point at a.b,
    `from a import name` at a; relative imports are resolved. The implicit import of a parent package by its
    submodule is not an edge (it runs first and is done by the time the submodule runs)."""

    def target(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = graph.setdefault(module, set())
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found = [target(alias.name) for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                found = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else target(base)
                    for alias in node.names
                ]
            edges.update(f for f in found if f and f != module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (iterative depth-first search, nodes in sorted order)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [iter(sorted(graph.get(start, ())))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"a"}, "a": {"b", "d"}, "b": set(), "d": {"a"}}) == ["a", "d", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b"}, "c": {"b"}, "b": set()}) is None  # shared, not circular


def test_the_import_graph_sees_every_kind_of_import(tmp_path):
    """A throwaway package with one import of each kind, and a circle that only a function-level import closes."""
    files = {
        "pkg/__init__.py": "from pkg import a\n",
        "pkg/a.py": "import pkg.b\nfrom . import c\nfrom .sub import d as dee\n",
        "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\nimport os\n",
        "pkg/c.py": "from pkg.sub.d import thing\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/d.py": "thing = 1\ndef late():\n    from ..a import dee\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    graph = import_graph(module_files(tmp_path, ("pkg",)))
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b", "pkg.c", "pkg.sub.d"},
        "pkg.b": set(),  # the TYPE_CHECKING import is not an edge; neither is os nor the parent package
        "pkg.c": {"pkg.sub.d"},
        "pkg.sub": set(),
        "pkg.sub.d": {"pkg.a"},
    }
    assert find_cycle(graph) == ["pkg.a", "pkg.c", "pkg.sub.d", "pkg.a"]


def test_no_import_circle_anywhere():
    modules = module_files()
    assert {"core", "adapters", "pipeline.run", "voting", "llmcomp.cli", "tools.tiny"} <= set(modules)
    cycle = find_cycle(import_graph(modules))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


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
    rows = list(csv.DictReader((work / "predictions" / "jd" / "dev" / "tfidf.csv").open(encoding="utf-8")))
    dev_ids = [r["id"] for r in json.loads((sample_data / "jd_dev.json").read_text(encoding="utf-8"))]
    assert [r["id"] for r in rows] == dev_ids  # the dev split, not test
    # the report's gold is the same split: the vote finds the judge task from the dataset itself
    proc = run_make(work, "report", "SPLIT=dev", "TIE=tfidf", *make, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (work / "submissions" / "jd" / "dev" / "report" / "report.json").is_file()  # the split's own folder


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
