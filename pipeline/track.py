"""What the stages of pipeline/ record in the tracking store (core/tracking.py), read from their folders, so that a
run recorded as it ends and one imported later (`llmcomp track import saves/...`) are the same record.

    llmcomp track import [FOLDER ...]    runs made with TRACK=0, or before tracking existed (default: all of saves/)
    llmcomp runs --task T [--json]       the task's runs side by side, best first (make runs TASK=t)
    llmcomp track ui [--host --port]     MLflow's UI on the embedded store, 127.0.0.1:5000 (make tracking-ui)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml

from core import tracking

# trainer_log.jsonl keys (LLaMA-Factory's LogCallback) → the metric names people look for
SERIES = {"loss": "loss", "lr": "learning_rate", "grad_norm": "grad_norm", "eval_loss": "eval_loss"}
ARTIFACTS = ("run.yaml", "manifest.json", "training_loss.png", "training_eval_loss.png", "report.json")
STATUS = {"done": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "running": "RUNNING"}


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def epoch(stamp: str | None) -> float | None:
    try:
        return dt.datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None


def trainer_series(folder: Path) -> tuple[dict[str, list[tuple[int, Any]]], dict[str, Any]]:
    """(loss, learning rate, grad norm per logging step; the last entry's totals) from trainer_log.jsonl."""
    series: dict[str, list[tuple[int, Any]]] = {}
    last: dict[str, Any] = {}
    try:
        lines = (folder / "trainer_log.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return series, last
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        step = entry.get("current_steps")
        for key, name in SERIES.items():
            if key in entry and step is not None:
                series.setdefault(name, []).append((int(step), entry[key]))
        last = entry
    return series, last


PRESET_STAGES = {
    "lora_sft.yaml": "train",
    "qlora_sft.yaml": "qlora",
    "predict.yaml": "predict",
    "export.yaml": "export",
}


def folder_stage(folder: Path) -> str:
    """The stage that wrote a run folder: its manifest's preset file (a cv fold and a sweep trial are trainings)."""
    preset = str((read_json(Path(folder) / "manifest.json") or {}).get("preset") or "")
    return PRESET_STAGES.get(Path(preset).name, Path(folder).name)


def folder_names(folder: Path) -> tuple[str, str, dict[str, str]]:
    """(task, model, {fold: K} or {trial: N}) of saves/TASK/MODEL/<stage>, saves/TASK/MODEL/cv/fold-K,
    saves/TASK/MODEL/sweep/trial-N (any folder below a `saves` one)."""
    parts = Path(folder).parts
    base = len(parts) - 1 - parts[::-1].index("saves") if "saves" in parts else max(len(parts) - 3, 0)
    task, model = parts[base + 1], parts[base + 2]
    extra = {}
    for part in parts[base + 3 :]:
        kind, _, number = part.partition("-")
        if kind in ("fold", "trial") and number.isdigit():
            extra[kind] = number
    return task, model, extra


def record_folder(folder: Path, stage: str | None = None, extra_tags: dict[str, str] | None = None) -> str | None:
    """Record saves/TASK/MODEL/<stage folder> from its manifest, run.yaml, trainer_log.jsonl and files."""
    folder = Path(folder)
    manifest = read_json(folder / "manifest.json") or {}
    config: dict[str, Any] = {}
    with contextlib.suppress(OSError, yaml.YAMLError):
        config = yaml.safe_load((folder / "run.yaml").read_text(encoding="utf-8")) or {}
    task, model, extra = folder_names(folder)
    stage = stage or folder_stage(folder)
    series, last = trainer_series(folder)
    results = read_json(folder / "train_results.json") or read_json(folder / "all_results.json") or {}
    metrics = {k: v for k, v in results.items() if isinstance(v, int | float)}
    if manifest.get("seconds") is not None:
        metrics["wall_seconds"] = manifest["seconds"]
    if "total_steps" in last:
        metrics["steps"] = last.get("current_steps", last["total_steps"])
    status = str(manifest.get("status") or "done")
    tags = {
        "folder": str(folder),
        "model": model,
        "status": status,
        "git_commit": manifest.get("git_commit"),
        "preset": manifest.get("preset"),
    }
    for path, digest in (manifest.get("datasets") or {}).items():
        tags[f"data.{Path(path).name}"] = digest[:16]
    if stage in ("predict", "export"):
        adapter = str(config.get("adapter_name_or_path") or "")
        train_run = tracking.latest_run_id(task, folder=adapter, stage="train") if adapter else None
        tags.update(adapter=adapter or "base model", train_run=train_run or "")
    tags.update(extra)
    tags.update(extra_tags or {})
    params = {**config, "seed": manifest.get("seed"), "packages": manifest.get("packages") or {}}
    return tracking.record(
        stage,
        task,
        f"{stage} {model}",
        params=params,
        metrics=metrics,
        series=series,
        tags={k: v for k, v in tags.items() if v is not None},
        artifacts=[folder / name for name in ARTIFACTS],
        start=epoch(manifest.get("started")),
        end=epoch(manifest.get("ended")),
        status=STATUS.get(status.split(" ")[0], "FINISHED"),
    )


def record_predictions(
    stage: str, task: str, model: str, csv_path: Path, split: str, rows: int, seconds: float, **extra: Any
) -> str | None:
    """A predictions file (predict, score, baseline): split, rows, rows/s, metrics where gold exists, linked to the
    training run whose adapter made it."""
    metrics = {"rows": rows, "rows_per_second": rows / seconds if seconds > 0 else None, "seconds": seconds}
    metrics.update({k: v for k, v in extra.pop("metrics", {}).items() if isinstance(v, int | float)})
    adapter = str(extra.pop("adapter", "") or "")
    train_run = tracking.latest_run_id(task, folder=adapter, stage="train") if adapter else None
    tags = {"model": model, "split": split, "predictions": str(csv_path), "adapter": adapter or "base model"}
    tags.update(train_run=train_run or "", **{k: str(v) for k, v in extra.items()})
    return tracking.record(
        stage, task, f"{stage} {model} {split}", metrics=metrics, tags=tags, artifacts=[csv_path], end=None
    )


def adapter_of(folder: Path) -> str:
    """The adapter a run folder's run.yaml names ("" for the base model)."""
    try:
        config = yaml.safe_load((Path(folder) / "run.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return str(config.get("adapter_name_or_path") or "")


def import_folders(folders: list[Path]) -> list[tuple[Path, str | None]]:
    """Record every run folder (one holding a manifest.json) below `folders` that the store does not have yet."""
    done = []
    for root in folders:
        for manifest in sorted(Path(root).rglob("manifest.json")):
            folder = manifest.parent
            task = folder_names(folder)[0]
            if tracking.find_runs(task, folder=str(folder), stage=folder_stage(folder)):
                continue  # already recorded: as it ended, or by an earlier import
            done.append((folder, record_folder(folder)))
    return done
