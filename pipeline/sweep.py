"""Hyperparameter sweeps on Optuna: each trial a normal training run, judged by label scoring on dev, pruned early.

    python -m pipeline.sweep --model M --task T [--trials 20] [--space sweep.yaml] [--split dev] [key=value ...]
    (make sweep MODEL=m TASK=t TRIALS=20 [SPACE=sweep.yaml]; then make train ... PARAMS=saves/T/M/sweep/best.yaml)

- The space (pipeline/sweep_space.py): a small YAML of LLaMA-Factory keys, ranges, choices or values
  (factory_configs/MODEL/sweep.yaml by default); an unknown key or an empty range is refused before any trial.
- A trial: the run's overrides plus the trial's, trained by pipeline.runs (lock, run.yaml, manifest, resume) into
  saves/TASK/MODEL/sweep/trial-N/. While it trains, each complete checkpoint is label-scored on dev (pipeline.select,
  recorded in the trial's selection.json) and reported to Optuna at its step; a trial the pruner stops (MedianPruner,
  and `--prune-below X`: any checkpoint under X) has its trainer stopped and its manifest says `pruned`. The value
  is the final adapter's metric (the task's: MCC for CoLA). A crash or a NaN loss is a failed trial, and the study
  goes on; Ctrl-C stops the running trial as `make train` stops (manifest `interrupted`), and the next
  `make sweep` resumes it from its last checkpoint, in its own folder.
- The study: TPESampler(seed), Optuna's RDB storage, SQLite in saves/TASK/MODEL/sweep/study.db by default, resumed
  (load_if_exists); OPTUNA_STORAGE=postgresql://... (or mysql://) lets several machines run one study. A trial
  whose process died (no heartbeat for twice --heartbeat seconds) is retried in its folder.
- After the study: history.png, importances.png (two complete trials at least) and best.yaml (the best trial's
  overrides, for PARAMS=) in the sweep folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from core import tracking
from core.fileio import atomic_open, atomic_write_json, atomic_write_text, locked
from core.paths import stage_dir
from pipeline.errors import RunError, RunInterrupted
from pipeline.run import Run, stage_main, stage_parser
from pipeline.runs import run_stage
from pipeline.select import METRICS, RAW_SCORES, ScoringOptions, add_calibrate, candidates, scored_entries
from pipeline.sweep_space import Param, read_space, space_overrides, space_path
from pipeline.track import folder_names


def tag_trial_run(trial_dir: Path, study_name: str, number: int) -> None:
    """Tag the trial's tracked run (recorded by runs.py as it ended) with its study and trial number."""
    found = tracking.find_runs(folder_names(trial_dir)[0], folder=str(trial_dir), stage="train")
    if found:
        with contextlib.suppress(Exception), tracking.store_lock():  # a tag that cannot be written never stops it
            store = tracking.client()
            store.set_tag(found[0].info.run_id, f"{tracking.TAG}study", study_name)
            store.set_tag(found[0].info.run_id, f"{tracking.TAG}trial", str(number))


class TrialFailed(Exception):
    """A trial that crashed or diverged: recorded as failed, the study goes on."""


def nan_loss_step(folder: Path) -> int | None:
    """The first logged step whose training loss is NaN or infinite in folder/trainer_state.json, else None."""
    try:
        history = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8")).get("log_history", [])
    except (OSError, ValueError):
        return None
    for log in history:
        loss = log.get("loss")
        if isinstance(loss, (int, float)) and not math.isfinite(loss):
            return int(log.get("step", -1))
    return None


def planned_steps(folder: Path) -> float:
    """The run's max_steps as its trainer state records it (inf where unknown): a checkpoint at that step is the
    end of training, reported but never pruned (nothing would be saved)."""
    try:
        return int(json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))["max_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return math.inf


def stop_trainer(trial_dir: Path) -> None:
    """SIGTERM to the trainer of `trial_dir` (its PID is the second in the run lock, pipeline.supervise.RunLock)."""
    lock = trial_dir.with_name(f".{trial_dir.name}.lock")
    try:
        holders = lock.read_text().split()
    except OSError:
        return
    if len(holders) > 1:
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(holders[1]), signal.SIGTERM)  # the trainer leads its own process group


class CheckpointJudge(threading.Thread):
    """Scores each new complete checkpoint of a trial while it trains, reports it to Optuna at its step, and stops
    the trainer of a trial the pruner prunes (or whose loss became NaN). `judge()` runs the same in the caller."""

    def __init__(self, trial: Any, run: Run, trial_dir: Path, metric: str, how: ScoringOptions, poll: float = 2.0):
        super().__init__(daemon=True)
        self.trial, self.scoring, self.trial_dir, self.metric, self.how = trial, run, trial_dir, metric, how
        self.poll, self.done, self.lock = poll, threading.Event(), threading.Lock()
        self.reported: set[int] = set()
        self.stopped: str | None = None  # why the trainer was stopped

    def run(self) -> None:
        while not self.done.wait(self.poll) and self.stopped is None:
            self.judge()

    def judge(self) -> None:
        with self.lock:
            for candidate in candidates(self.trial_dir, final=False):
                if self.stopped or candidate.step is None or candidate.step in self.reported:
                    continue
                nan = nan_loss_step(candidate.path)
                if nan is not None:
                    self.stopped = f"NaN loss at step {nan}"
                    stop_trainer(self.trial_dir)
                    return
                entry = scored_entries(self.scoring, self.trial_dir, [candidate], self.how, say=self.say)[0]
                self.trial.report(entry[self.metric], candidate.step)
                self.reported.add(candidate.step)
                self.say(
                    f"[sweep] trial {self.trial.number} step {candidate.step}: {self.metric} {entry[self.metric]:.3f}"
                )
                if candidate.step < planned_steps(candidate.path) and self.trial.should_prune():
                    self.stopped = f"pruned at step {candidate.step} ({self.metric} {entry[self.metric]:.3f})"
                    stop_trainer(self.trial_dir)
                    return

    def finish(self) -> None:
        self.done.set()
        if self.is_alive():
            self.join()

    @staticmethod
    def say(text: str) -> None:
        print(text, flush=True)


def mark_manifest(trial_dir: Path, status: str) -> None:
    path = trial_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    manifest["status"] = status
    atomic_write_json(path, manifest)


@dataclass
class Sweep:
    """One study over one run: the space, where trials go, how they are judged."""

    run: Run
    space: list[Param]
    sweep_dir: Path
    study_name: str
    metric: str
    how: ScoringOptions = RAW_SCORES
    current: int | None = None

    def objective(self, trial: Any) -> float:
        folder = trial.user_attrs.get("folder") or f"trial-{trial.number}"  # a retried trial resumes its folder
        trial.set_user_attr("folder", folder)
        trial_dir = self.sweep_dir / folder
        params = {param.name: param.suggest(trial) for param in self.space}
        scoring = self.run.with_overrides(*space_overrides(params))
        training = scoring.with_overrides(f"output_dir={trial_dir}")
        self.current = trial.number
        print(f"[sweep] trial {trial.number} ({folder}): {params}", flush=True)
        judge = CheckpointJudge(trial, scoring, trial_dir, self.metric, self.how)
        judge.start()
        try:
            run_stage(training, "train")
        except RunInterrupted:
            judge.finish()
            raise
        except RunError as err:
            judge.finish()
            if judge.stopped is None:
                trial.set_user_attr("error", str(err))
                raise TrialFailed(str(err)) from None
        finally:
            tag_trial_run(trial_dir, self.study_name, trial.number)  # its run was recorded as the training ended
        judge.finish()
        judge.judge()  # the checkpoints saved after the judge's last look, in step order
        if judge.stopped is None and (nan := nan_loss_step(trial_dir)) is not None:
            judge.stopped = f"NaN loss at step {nan}"
        if judge.stopped:
            mark_manifest(trial_dir, judge.stopped)
            trial.set_user_attr("stopped", judge.stopped)
            if judge.stopped.startswith("NaN"):
                raise TrialFailed(judge.stopped)
            raise optuna.TrialPruned(judge.stopped)
        final = [c for c in candidates(trial_dir) if c.name == "final"]
        if not final:
            raise TrialFailed(f"{trial_dir} holds no final adapter after training")
        value = scored_entries(scoring, trial_dir, final, self.how)[0][self.metric]
        print(f"[sweep] trial {trial.number}: {self.metric} {value:.3f} (final adapter)", flush=True)
        return float(value)


def open_study(sweep_dir: Path, seed: int, prune_below: float | None, heartbeat: int, name: str) -> optuna.Study:
    """The study `name` in OPTUNA_STORAGE, else in SQLite beside the trials; created or loaded."""
    url = os.environ.get("OPTUNA_STORAGE") or f"sqlite:///{sweep_dir / 'study.db'}"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    storage = optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine,
        heartbeat_interval=heartbeat,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
    )
    pruners: list[optuna.pruners.BasePruner] = [optuna.pruners.MedianPruner(n_startup_trials=3)]
    if prune_below is not None:
        pruners.append(optuna.pruners.ThresholdPruner(lower=prune_below))
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", load_if_exists=True, pruner=AnyPruner(pruners)
    )
    # seeded, and offset by the trials already there: a resumed study or a second machine does not repeat the first
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)))
    return study


class AnyPruner(optuna.pruners.BasePruner):
    """Prunes where any of its pruners would: the median rule, and --prune-below's floor."""

    def __init__(self, pruners: list[optuna.pruners.BasePruner]) -> None:
        self.pruners = pruners

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return any(pruner.prune(study, trial) for pruner in self.pruners)


def counted(study: Any) -> tuple[int, bool]:
    """(trials that count towards --trials, whether a retry or an enqueued trial waits): finished, running or
    waiting, a failed trial that is being retried not counted twice."""
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    count = sum(t.state != TrialState.FAIL or t.number not in retried for t in trials)
    return count, any(t.state == TrialState.WAITING for t in trials)


def retry_interrupted(study: Any, number: int) -> None:
    """A trial stopped by Ctrl-C is queued again (as a stale trial would be): the next sweep resumes its folder."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    RetryHeartbeatStaleTrialCallback()(study, frozen)


def sweep(
    run: Run,
    trials: int = 20,
    space_file: str | None = None,
    seed: int = 0,
    prune_below: float | None = None,
    heartbeat: int = 60,
    metric: str | None = None,
    how: ScoringOptions = RAW_SCORES,
    timeout: float | None = None,
) -> Path:
    """Run the study until it holds `trials` trials (or, with `timeout`, until that many seconds have passed: no
    trial starts after it, the running one finishes); write its plots and best.yaml; return best.yaml's path."""
    path = space_path(run.model, space_file)
    space = read_space(path)
    clash = sorted({p.name for p in space} & set(run.override_dict) | {"output_dir"} & set(run.override_dict))
    if clash:
        raise RunError(f"the overrides set {', '.join(clash)}, which the sweep decides ({path}); leave them out")
    metric = metric or (run.spec.metric if run.spec is not None else "accuracy")
    run.data_file()  # the dev split must be there before any trial trains
    sweep_dir = stage_dir(run.task, run.model, "sweep")
    name = f"{run.task}-{run.model}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retries, plots
    study = open_study(sweep_dir, seed, prune_below, heartbeat, name)
    job = Sweep(run, space, sweep_dir, name, metric, how)
    where = (
        "OPTUNA_STORAGE" if os.environ.get("OPTUNA_STORAGE") else sweep_dir / "study.db"
    )  # a URL may hold a password
    print(f"[sweep] study {name} in {where}: {trials} trials", flush=True)
    print(f"[sweep] space {path}: {', '.join(p.name for p in space)}; {metric} on {run.task}_{run.split}", flush=True)
    started = time.monotonic()
    while True:
        done, waiting = counted(study)
        if done >= trials and not waiting:
            break
        if timeout is not None and time.monotonic() - started >= timeout:
            print(
                f"[sweep] TIMEOUT={timeout:g} s passed: no new trial ({done} of {trials} in the study; "
                "make sweep again continues it)",
                flush=True,
            )
            break
        job.current = None
        try:
            study.optimize(job.objective, n_trials=1, catch=(TrialFailed,))
        except (RunInterrupted, KeyboardInterrupt) as err:
            if job.current is not None:
                retry_interrupted(study, job.current)
            signum = err.exit_code - 128 if isinstance(err, RunInterrupted) else signal.SIGINT
            raise RunInterrupted(
                f"the sweep stopped during trial {job.current}; make sweep again resumes it", signum
            ) from None
    return write_results(study, sweep_dir, run, metric, space)


def write_results(study: Any, sweep_dir: Path, run: Run, metric: str, space: list[Param]) -> Path:
    """The trials' table, history.png, importances.png and best.yaml."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    for t in trials:
        why = t.user_attrs.get("stopped") or t.user_attrs.get("error") or ""
        value = f"{metric} {t.value:.3f}" if t.value is not None else ""
        print(f"  trial {t.number:>3} {t.state.name:<8} {value:<12} {t.params} {why[:120]}")
    write_plots(study, sweep_dir)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_yaml = sweep_dir / "best.yaml"
    if not complete:
        raise RunError(f"no trial of the study completed; see the table above and {sweep_dir}/trial-*/manifest.json")
    best = study.best_trial
    fixed = {p.name: p.choices[0] for p in space if p.kind == "fixed" and p.name not in best.params}
    header = (
        f"# the best trial ({best.number}, {best.user_attrs.get('folder')}) of the study {study.study_name}: "
        f"{metric} {best.value:.4f} on {run.task}_{run.split}, {len(complete)} of {len(trials)} trials complete\n"
        f"# train with it: make train MODEL={run.model} TASK={run.task} PARAMS={best_yaml}\n"
    )
    with locked(best_yaml):
        atomic_write_text(best_yaml, header + yaml.safe_dump({**best.params, **fixed}, sort_keys=False))
    print(f"[sweep] best: trial {best.number}, {metric} {best.value:.3f} → {best_yaml}")
    return best_yaml


def write_plots(study: Any, sweep_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as plots

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib plots are "experimental", and empty histories warn
        drawings: list[tuple[str, Any]] = [("history.png", plots.plot_optimization_history)]
        if len(complete) >= 2:
            drawings.append(("importances.png", plots.plot_param_importances))
        else:
            print(f"[sweep] importances.png: {len(complete)} complete trial(s); importances need 2 at least")
        for file_name, draw in drawings:
            try:
                axes = draw(study)
            except (ValueError, RuntimeError) as err:  # e.g. every complete trial with the same parameters
                print(f"[sweep] {file_name}: not drawn ({err})")
                continue
            figure: Any = axes.figure
            figure.tight_layout()
            with atomic_open(sweep_dir / file_name, "wb") as handle:
                figure.savefig(handle, format="png", dpi=100)
            plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("python -m pipeline.sweep", __doc__, limit=False)
    parser.set_defaults(split="dev")
    parser.add_argument("--trials", type=int, default=20, help="trials the study should hold (TRIALS=, default 20)")
    parser.add_argument("--space", help="the search space YAML (default factory_configs/MODEL/sweep.yaml)")
    parser.add_argument("--seed", type=int, default=0, help="TPESampler's seed (plus the trials already run)")
    parser.add_argument("--metric", choices=METRICS, help="the objective (default: the task's, MCC for CoLA)")
    parser.add_argument("--prune-below", type=float, metavar="X", help="also prune a trial at any checkpoint under X")
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=60,
        help="seconds between a trial's heartbeats; one silent for twice as "
        "long (its process died) is retried in its folder (default 60)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="label scoring's batch size")
    add_calibrate(parser)
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="start no trial after SECONDS (TIMEOUT=); the running one finishes, the results are written",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    how = ScoringOptions(args.batch_size, args.calibrate)
    options = (args.trials, args.space, args.seed, args.prune_below, args.heartbeat, args.metric, how, args.timeout)
    return stage_main(lambda: sweep(Run.from_args(args), *options))


if __name__ == "__main__":
    sys.exit(main())
