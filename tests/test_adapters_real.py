"""Every real competition file in ../shared/data converts with the counts its README gives, and LLaMA-Factory's
own loader then loads and tokenizes each registered dataset (max_samples=50) with the tiny test model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.cli import main

pytestmark = pytest.mark.shared

# (task, name, {split: file under shared/data}, extra options, {dataset: expected records})
RUNS = [
    (
        "cola",
        "cola",
        {"train": "cola/in_domain_train.tsv", "dev": "cola/in_domain_dev.tsv"},
        [],
        {"cola_train": 8551, "cola_dev": 527},
    ),
    ("qqp", "qqp", {"train": "qqp/train_head9.tsv", "dev": "qqp/dev_head9.tsv"}, [], {"qqp_train": 9, "qqp_dev": 9}),
    (
        "judge",
        "judge",
        {"train": "df1032/train_fluency_1200.csv", "test": "df1032/test_A.csv"},
        [],
        {"judge_train": 1200, "judge_test": 3049},
    ),
    ("judge", "judgeB", {"test": "df1032/test-B.xlsx"}, [], {"judgeB_test": 2750}),
    (
        "logic",
        "logic",
        {"train": "logic/round1_train_data.jsonl", "test": "logic/round1_test_data.jsonl"},
        [],
        {"logic_train": 1421, "logic_test": 1328},
    ),
    ("qa", "gongkao", {"train": "gongkao/output.jsonl"}, [], {"gongkao_train": 10397}),
    ("paper", "iflytekA", {"test": "iflytek/test.csv"}, [], {"iflytekA_cls_test": 2358, "iflytekA_kw_test": 2358}),
    ("paper", "iflytekB", {"test": "iflytek/testB.csv"}, [], {"iflytekB_cls_test": 2000, "iflytekB_kw_test": 2000}),
]
DATASETS = [dataset for run in RUNS for dataset in run[4]]


@pytest.fixture(scope="module")
def converted(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All real files converted into one data dir (one dataset_info.json), as a user would do it."""
    data_dir = tmp_path_factory.mktemp("real-data")
    for task, name, files, extra, _ in RUNS:
        args = [task, "--name", name, "--data-dir", str(data_dir), "--tokenizer", "none", *extra]
        for split, file in files.items():
            args += [f"--{split}", str(shared_data / file)]
        assert main(args) == 0, name
    return data_dir


def _report(data_dir: Path, name: str) -> dict:
    return json.loads((data_dir / f"{name}_report.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("run", RUNS, ids=[run[1] for run in RUNS])
def test_real_file_counts_match_the_readme(converted: Path, run):
    task, name, files, _, expected = run
    report = _report(converted, name)
    info = json.loads((converted / "dataset_info.json").read_text(encoding="utf-8"))
    for dataset, count in expected.items():
        records = json.loads((converted / f"{dataset}.json").read_text(encoding="utf-8"))
        assert len(records) == count == report["datasets"][dataset]["rows_out"]
        assert report["datasets"][dataset]["skipped"] == 0
        assert info[dataset]["file_name"] == f"{dataset}.json"
        assert {"prompt", "query", "response"} <= set(info[dataset]["columns"])
        assert len({r["id"] for r in records}) == count  # ids are unique: predictions join back by them


def test_real_details(converted: Path):
    judge = _report(converted, "judge")["datasets"]
    assert judge["judge_test"]["empty_content"] == {"规范性": 24}  # kept, counted
    assert judge["judge_train"]["labels"] == {
        "流畅性 1": 114,
        "流畅性 2": 152,
        "流畅性 3": 510,
        "流畅性 4": 260,
        "流畅性 5": 164,
    }
    assert _report(converted, "judgeB")["datasets"]["judgeB_test"]["labels"] == {
        "流畅性 (unlabelled)": 1000,
        "规范性 (unlabelled)": 1000,
        "选择题 (unlabelled)": 750,
    }
    cola = _report(converted, "cola")["datasets"]["cola_train"]["labels"]
    assert 0.25 < cola["0"] / 8551 < 0.35  # README: balance ≈ 30/70
    logic = json.loads((converted / "logic_train.json").read_text(encoding="utf-8"))
    assert logic[0]["id"] == "round1_train_data_000#0" and logic[0]["output"] == "D" and "\nD: " in logic[0]["input"]
    assert _report(converted, "logic")["datasets"]["logic_train"]["problems"] == 500
    assert _report(converted, "iflytekA")["datasets"]["iflytekA_cls_test"]["empty_abstract"] == 1
    gongkao = json.loads((converted / "gongkao_train.json").read_text(encoding="utf-8"))
    assert gongkao[0]["system"].startswith("你是一位专业")
    assert (
        json.loads((converted / "dataset_info.json").read_text(encoding="utf-8"))["gongkao_train"]["columns"]["system"]
        == "system"
    )


def test_gongkao_duplicates_are_reported_and_dropped_only_on_request(shared_data: Path, tmp_path: Path):
    source = str(shared_data / "gongkao" / "output.jsonl")
    args = ["qa", "--train", source, "--name", "g", "--tokenizer", "none", "--data-dir"]
    assert main([*args, str(tmp_path / "keep")]) == 0
    kept = _report(tmp_path / "keep", "g")["datasets"]["g_train"]
    assert kept["rows_in"] == kept["rows_out"] == 10397
    assert kept["duplicate_texts"]["count"] > 0  # README: duplicates exist
    assert main([*args, str(tmp_path / "drop"), "--drop-duplicates"]) == 0
    dropped = _report(tmp_path / "drop", "g")["datasets"]["g_train"]
    assert dropped["rows_in"] == 10397
    assert dropped["rows_out"] + dropped["duplicates_dropped"] == 10397 and dropped["duplicates_dropped"] > 0
    assert len(dropped["skipped_rows"]) == dropped["duplicates_dropped"]  # each drop is listed


def test_cola_seed_controls_on_real_file(shared_data: Path, tmp_path: Path):
    code = main(
        [
            "cola",
            "--train",
            str(shared_data / "cola/in_domain_train.tsv"),
            "--dev",
            str(shared_data / "cola/in_domain_dev.tsv"),
            "--name",
            "c",
            "--data-dir",
            str(tmp_path),
            "--tokenizer",
            "none",
            "--max-train",
            "1000",
            "--stratify",
            "--first-dev",
            "150",
        ]
    )
    assert code == 0
    datasets = _report(tmp_path, "c")["datasets"]
    assert datasets["c_train"]["rows_out"] == 1000 and datasets["c_dev"]["rows_out"] == 150
    assert abs(datasets["c_train"]["labels"]["0"] / 1000 - 2528 / 8551) < 0.002


def test_token_report_on_a_real_file(shared_data: Path, tmp_path: Path, tiny_model: Path):
    code = main(
        [
            "judge",
            "--test",
            str(shared_data / "df1032/test_A.csv"),
            "--name",
            "a",
            "--data-dir",
            str(tmp_path),
            "--tokenizer",
            str(tiny_model),
            "--cutoff-len",
            "1024",
        ]
    )
    assert code == 0
    tokens = _report(tmp_path, "a")["datasets"]["a_test"]["tokens"]
    assert 0 < tokens["p50"] <= tokens["p95"] <= tokens["max"]
    assert 0 < tokens["over_cutoff"] < 3049  # long 规范性 essays exceed 1024 tokens under a 512-token vocabulary


@pytest.fixture(scope="module")
def lf_load(converted: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """LLaMA-Factory's own path: get_train_args → load_tokenizer → template → get_dataset (sft)."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    work = tmp_path_factory.mktemp("lf")

    def load(dataset: str, data_dir: Path = converted, cutoff_len: int = 512, **extra):
        model_args, data_args, training_args, _, _ = get_train_args(
            {
                "model_name_or_path": str(tiny_model),
                "stage": "sft",
                "do_train": True,
                "finetuning_type": "lora",
                "dataset": dataset,
                "dataset_dir": str(data_dir),
                "template": "smollm2",
                "cutoff_len": cutoff_len,
                "max_samples": 50,
                "overwrite_cache": True,
                "output_dir": str(work / "out"),
                "report_to": "none",
                "cache_dir": str(work / "cache"),
                **extra,
            }
        )
        tokenizer_module = load_tokenizer(model_args)
        template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
        module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
        return module["train_dataset"], tokenizer_module["tokenizer"]

    return load


@pytest.mark.parametrize("dataset", DATASETS)
def test_llamafactory_loads_and_tokenizes(lf_load, converted: Path, dataset: str):
    records = json.loads((converted / f"{dataset}.json").read_text(encoding="utf-8"))
    train, tokenizer = lf_load(dataset)
    assert len(train) == min(50, len(records))
    first = train[0]
    assert len(first["input_ids"]) == len(first["labels"]) > 0
    text = tokenizer.decode(first["input_ids"])
    assert records[0]["instruction"][:10] in text  # the instruction reached the prompt through the column mapping
    if records[0]["output"]:
        assert tokenizer.decode([t for t in first["labels"] if t != -100]).startswith(records[0]["output"][:5])


@pytest.mark.parametrize("fit", [True, False], ids=["fit-cutoff", "llamafactory-truncates"])
def test_fit_cutoff_keeps_the_assistant_header(lf_load, shared_data: Path, tmp_path: Path, tiny_model: Path, fit):
    """Long fluency essays under cutoff_len 128: LLaMA-Factory cuts an over-long prompt's tail, assistant header
    included; --fit-cutoff trims the essay instead, so every row LLaMA-Factory builds ends its prompt properly."""
    code = main(
        [
            "judge",
            "--train",
            str(shared_data / "df1032/train_fluency_1200.csv"),
            "--name",
            "fit",
            "--data-dir",
            str(tmp_path),
            "--tokenizer",
            str(tiny_model),
            "--cutoff-len",
            "128",
            *(["--fit-cutoff"] if fit else []),
        ]
    )
    assert code == 0
    entry = _report(tmp_path, "fit")["datasets"]["fit_train"]
    # default_system "" as the presets train; the tiny tokenizer's chat template has no default system prompt
    train, tokenizer = lf_load("fit_train", data_dir=tmp_path, cutoff_len=128, default_system="")
    header = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    answer_at = [next(i for i, t in enumerate(row["labels"]) if t != -100) for row in train]
    whole = sum(row["input_ids"][at - len(header) : at] == header for row, at in zip(train, answer_at, strict=True))
    if fit:
        assert entry["fitted_to_cutoff"] > 40 and entry["tokens"]["over_cutoff"] == 0
        assert whole == len(train) == 50
        assert all(len(row["input_ids"]) <= 128 for row in train)
    else:
        assert "fitted_to_cutoff" not in entry and entry["tokens"]["over_cutoff"] > 40
        assert whole < 10  # the essay runs straight into the score
