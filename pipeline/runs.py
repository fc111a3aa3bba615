"""Run a factory_configs/ preset through llamafactory-cli: check it, lock its folder, record the exact YAML and a
manifest beside the outputs, launch the supervised child, and record how it ended.

Every check (pipeline.checks) runs before anything is written. One run per folder (pipeline.supervise.RunLock);
the child runs in its own process group and receives our SIGINT/SIGTERM. Secrets given as overrides
(`hf_hub_token=...`) reach the child through a private temporary file and are written as `***` everywhere else
(pipeline.manifest).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from core.fileio import atomic_write_json, atomic_write_text
from pipeline.checkpoints import last_complete_checkpoint, prepare_train_dir
from pipeline.checks import check_adapter, check_config, check_cutoff, check_device, check_model_reachable
from pipeline.errors import RunError, RunInterrupted
from pipeline.manifest import build_manifest, mark_stale_manifest, redact
from pipeline.presets import ROOT, preset_path
from pipeline.run import Run
from pipeline.supervise import TRAINER_LOG, ProgressLines, RunLock, cli_command, launch, log_friendly
from pipeline.track import record_folder

DOING = {"train": "trained", "qlora": "trained", "predict": "predicted into", "export": "exported into"}
# what a stopped run leaves and how to go on: training resumes from its checkpoints, the others start again
AFTER_STOP = {
    "train": "re-run to resume from the last complete checkpoint",
    "qlora": "re-run to resume from the last complete checkpoint",
    "predict": "nothing was written to predictions/; re-run to predict again",
    "export": "re-run to export again",
}


def say_row_cap(stage: str, config: dict[str, Any], trial: bool, given: bool) -> None:
    """Say when max_samples cuts the dataset: LIMIT= (a trial run) or an override; the preset's own cap (100000,
    above any dataset here) is not news."""
    dataset = config["eval_dataset" if stage == "predict" else "dataset"]
    if trial:
        print(f"[{stage}] LIMIT: the first {config['max_samples']} rows of {dataset} only (a trial run)", flush=True)
    elif given:
        print(f"[{stage}] max_samples={config['max_samples']}: the first rows of {dataset} only", flush=True)


def run_stage(
    run: Run,
    stage: str,
    fresh: bool = False,
    dry_run: bool = False,
    extra: tuple[str, ...] = (),
    dataset_dir: Path | None = None,
) -> Path:
    """Check, lock, record and launch one stage of `run`; return its output folder. Nothing is written before the
    checks. `extra`: overrides this stage adds under the user's (sampling, max_samples). `dataset_dir`: the folder
    the stage reads its dataset from instead of the run's (predict's trial rows), after the checks on the run's."""
    preset = preset_path(run.model, stage)
    if stage in ("train", "qlora") and run.limit is not None:
        extra = (f"max_samples={run.limit}", *extra)  # LIMIT=N trains on the first N rows: a trial run
    config = run.config(stage, extra)
    overrides = {**run.override_dict}
    where = f"{preset.relative_to(ROOT)} with overrides {redact(overrides) or '{}'}"
    check_config(config, stage, where)
    check_device(config, where)
    if stage != "export":
        check_cutoff(config, stage, run.model, run.task, explicit="cutoff_len" in overrides)
    if not dry_run:  # a dry run shows what would run, before training too
        check_adapter(config, stage, run.model, run.task)
        check_model_reachable(config, run.model)
    if dataset_dir is not None:
        config["dataset_dir"] = str(dataset_dir)
    out_dir = Path(config["export_dir"] if stage == "export" else config["output_dir"])
    print(f"[{stage}] {run.model} on {run.task} → {out_dir}", flush=True)
    if stage in ("predict", "export") and run.checkpoint_choice:
        print(f"[{stage}] CHECKPOINT={run.checkpoint}: {config['adapter_name_or_path']}", flush=True)
    if stage == "predict":
        print(f"[{stage}] max_new_tokens {config.get('max_new_tokens')}: {run.budget_reason(config)}", flush=True)
    if stage in ("train", "qlora", "predict") and config.get("max_samples"):
        say_row_cap(stage, config, run.limit is not None, "max_samples" in overrides)
    if dry_run:
        print(yaml.safe_dump(redact(config), allow_unicode=True, sort_keys=False))
        return out_dir
    lock = RunLock(out_dir, DOING[stage])
    try:
        previous = mark_stale_manifest(out_dir)
        if stage in ("train", "qlora"):
            config["overwrite_output_dir"], how = prepare_train_dir(
                out_dir, fresh, previous.get("status") if previous else None
            )
            if not config["overwrite_output_dir"] and "resume_from_checkpoint" not in overrides:
                config["resume_from_checkpoint"] = str(last_complete_checkpoint(out_dir)[0])
        elif stage == "predict":
            config["overwrite_output_dir"], how = True, "predicting"
        else:
            how = "merging"
        print(f"[{stage}] {how}", flush=True)
        chosen = run.checkpoint_choice if stage in ("predict", "export") else None
        return record_and_launch(stage, config, preset, overrides, where, out_dir, lock, previous, chosen)
    finally:
        lock.release()


def record_and_launch(
    stage: str,
    config: dict[str, Any],
    preset: Path,
    overrides: dict[str, Any],
    where: str,
    out_dir: Path,
    lock: RunLock,
    previous: dict[str, Any] | None,
    checkpoint: dict[str, Any] | None = None,
) -> Path:
    """Write run.yaml (secrets as ***) and the manifest, run llamafactory-cli, record how it ended."""
    run_yaml = out_dir / "run.yaml"
    command = cli_command(stage, run_yaml)
    env = {
        **os.environ,
        "DISABLE_VERSION_CHECK": os.environ.get("DISABLE_VERSION_CHECK", "0"),
        # LLaMA-Factory's launcher runs `torchrun` (and DeepSpeed its own tools) by name: the venv's, even unactivated
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    if config.get("deepspeed"):
        env.setdefault("FORCE_TORCHRUN", "1")  # DeepSpeed runs only under a launcher, even on one GPU
    progress = log_friendly(config, stage, env)
    out_dir.mkdir(parents=True, exist_ok=True)
    recorded = redact(config)
    atomic_write_text(
        run_yaml, f"# resolved from {where}\n" + yaml.safe_dump(recorded, allow_unicode=True, sort_keys=False)
    )
    manifest = build_manifest(config, command, preset, overrides, checkpoint)
    if previous:
        manifest["previous"] = {key: previous.get(key) for key in ("status", "started", "ended", "pid")}
    atomic_write_json(out_dir / "manifest.json", manifest)
    start = time.perf_counter()
    private = None
    if recorded != config:  # secrets: the trainer reads the real values from a file only this user can read
        private = Path(tempfile.mkdtemp(prefix="llmcomp-run-"))
        (private / "run.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    watcher = None
    if progress:
        (out_dir / TRAINER_LOG).unlink(missing_ok=True)  # a previous prediction's log
        watcher = ProgressLines(out_dir / TRAINER_LOG, stage)
        watcher.start()
    try:
        code, signum = launch(cli_command(stage, private / "run.yaml") if private else command, env, lock)
    finally:
        if watcher is not None:
            watcher.stop()
        if private:
            shutil.rmtree(private, ignore_errors=True)
    status = "done" if code == 0 else f"failed ({code})"
    if signum is not None:
        status = f"interrupted ({signal.Signals(signum).name})"
    manifest.update(
        ended=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - start, 1),
        status=status,
    )
    atomic_write_json(out_dir / "manifest.json", manifest)
    if stage != "predict":  # a prediction is recorded with its predictions file (pipeline/predict.py)
        record_folder(out_dir, stage)
    if signum is not None:
        raise RunInterrupted(
            f"{signal.Signals(signum).name}: stopped llamafactory-cli ({out_dir}); {AFTER_STOP[stage]}",
            signum,
        )
    if code != 0:
        raise RunError(f"llamafactory-cli exited with {code}; see the log above ({out_dir})")
    return out_dir
