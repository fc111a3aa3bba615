"""A factory_configs/ preset resolved for one run: the task's datasets and folders filled in, precision set for the
device, the generation budget, the user's `key=value` overrides last.

    saves/TASK/MODEL/lora/     train (LoRA SFT)            saves/TASK/MODEL/qlora/    qlora (4-bit QLoRA SFT)
    saves/TASK/MODEL/predict/  batch generation (LLaMA-Factory's predict_with_generate)
    saves/TASK/MODEL/merged/   export (LoRA merged into the base model, tokenizer, Ollama Modelfile)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from core import InputError
from core.paths import CONFIG_DIR, DATA_DIR, check_plain_name, stage_dir
from pipeline.errors import RunError

ROOT = Path(__file__).resolve().parents[1]
STAGE_FILES = {"train": "lora_sft.yaml", "qlora": "qlora_sft.yaml", "predict": "predict.yaml", "export": "export.yaml"}
Budget = tuple[int, str] | None  # (max_new_tokens, why) from the adapter's report, or None
COMPUTE: Any = object()  # resolve_config's `budget` when the caller has none yet


def preset_path(model: str, stage: str) -> Path:
    if stage not in STAGE_FILES:
        raise RunError(f"unknown stage {stage!r}; expected one of {', '.join(STAGE_FILES)}")
    try:
        check_plain_name(model, "--model")
    except InputError as err:
        raise RunError(str(err)) from None
    path = CONFIG_DIR / model / STAGE_FILES[stage]
    if not path.is_file():
        models = sorted(p.name for p in CONFIG_DIR.iterdir() if (p / "lora_sft.yaml").is_file())
        raise RunError(f"no preset {path.relative_to(ROOT)} (models: {', '.join(models)})")
    return path


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`key=value` pairs, values read as YAML scalars (LLaMA-Factory's CLI reads them the same way)."""
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RunError(f"override {item!r} is not key=value")
        parsed[key.strip()] = yaml.safe_load(value) if value else ""
    return parsed


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_config(
    model: str,
    stage: str,
    task: str,
    overrides: dict[str, Any] | None = None,
    cuda: bool | None = None,
    split: str = "test",
    data_dir: str | Path | None = None,
    budget: Budget = COMPUTE,
) -> dict[str, Any]:
    """The preset with the task's datasets and folders filled in, precision set for the device, overrides last.

    `data_dir` (every CLI's `--data-dir`) is LLaMA-Factory's `dataset_dir`; giving both it and a different
    `dataset_dir=` override is refused rather than one silently winning. `budget`: the generation budget the
    caller already has (pipeline.run.Run.budget), else it is read from the adapter's report here.
    """
    overrides = dict(overrides or {})
    if data_dir is not None and "dataset_dir" in overrides and str(overrides["dataset_dir"]) != str(data_dir):
        raise RunError(
            f"--data-dir {data_dir} and the override dataset_dir={overrides['dataset_dir']} disagree; give one"
        )
    config = yaml.safe_load(preset_path(model, stage).read_text(encoding="utf-8"))
    try:
        check_plain_name(task, "--task")
    except InputError as err:
        raise RunError(str(err)) from None
    if stage != "export":
        config["dataset_dir"] = str(data_dir or overrides.get("dataset_dir") or config.get("dataset_dir") or DATA_DIR)
    lora_dir = str(stage_dir(task, model, "train"))
    if stage in ("train", "qlora"):  # QLoRA has its own folder: it never overwrites a LoRA run's records
        config.update(dataset=f"{task}_train", output_dir=str(stage_dir(task, model, stage)))
    elif stage == "predict":
        config.update(
            eval_dataset=f"{task}_{split}",
            adapter_name_or_path=lora_dir,
            output_dir=str(stage_dir(task, model, "predict")),
        )
    elif stage == "export":
        config.update(adapter_name_or_path=lora_dir, export_dir=str(stage_dir(task, model, "export")))
    if stage == "predict" and "max_new_tokens" not in overrides:
        if budget is COMPUTE:
            budget = generation_budget(task, config["dataset_dir"])
        if budget is not None:
            config["max_new_tokens"] = budget[0]  # the task's answers, not the preset's label-sized cap
    if stage != "export":
        use_cuda = cuda_available() if cuda is None else cuda
        config["bf16"] = bool(use_cuda and config.get("bf16", True))  # kept where CUDA is, off on a CPU; never on
    config.update({key: value for key, value in overrides.items() if key != "dataset_dir"})
    if "adapter_name_or_path" in config and config["adapter_name_or_path"] in ("", None):
        del config["adapter_name_or_path"]  # `adapter_name_or_path=`: the base model (LLaMA-Factory reads "" as a path)
    return config


def report_entry(dataset: str, data_dir: str | Path | None = None) -> tuple[Path, dict, dict] | None:
    """(report path, report, the dataset's entry) from the adapter's report holding `dataset`, else None.

    The report (DATA/NAME_report.json, written by `make data`) is found by the dataset it holds, so `paper_kw_train`
    finds `paper_report.json`.
    """
    data_dir = Path(data_dir or DATA_DIR)
    first = data_dir / f"{dataset.rsplit('_', 1)[0]}_report.json"
    for path in [first, *sorted(p for p in data_dir.glob("*_report.json") if p != first)]:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        entry = report.get("datasets", {}).get(dataset) if isinstance(report, dict) else None
        if isinstance(entry, dict):
            return path, report, entry
    return None


def generation_budget(task: str, data_dir: str | Path | None = None) -> tuple[int, str] | None:
    """(max_new_tokens, why) from the adapter's report of TASK_train: its answers' p99 tokens + margin; else None."""
    dataset = f"{task}_train"
    found = report_entry(dataset, data_dir)
    if found is None:
        return None
    path, report, entry = found
    answer = (entry.get("tokens") or {}).get("answer")
    if isinstance(answer, dict) and isinstance(answer.get("max_new_tokens"), int):
        tokenizer = report.get("tokens", {}).get("tokenizer", "?")
        return answer["max_new_tokens"], (
            f"{path}: {dataset}'s answers are {answer['p99']} tokens at the 99th "
            f"percentile ({tokenizer}), plus a margin"
        )
    return None
