"""Checkpoint selection: label-score every complete checkpoint of a LoRA run, and its final adapter, on a split.

    python -m pipeline.select --model M --task T [--split dev] [--metric mcc] [--batch-size 16] [key=value ...]
    (make select MODEL=m TASK=t [SPLIT=dev]; then make predict|export ... CHECKPOINT=best)

Each `checkpoint-N` of saves/TASK/MODEL/lora that is complete (pipeline.checkpoints) and the run's final adapter are
scored by pipeline.label_scoring on TASK_<split> (dev by default). Their predictions go to
saves/TASK/MODEL/lora/selection/SPLIT/NAME.csv, never predictions/ (a vote never counts them); their figures to
saves/TASK/MODEL/lora/selection.json, keyed by the checkpoint's name, its trainer_state.json's sha256 and the split
file's sha256, so a re-run scores only what is new (a retrained run or changed data is scored again). The table is
printed, metric vs step drawn in selection.png beside it, and the best one (the task's metric: TaskSpec.metric, MCC
for CoLA; ties go to the earlier step) is recorded as `best`, which CHECKPOINT=best reads.

pipeline.sweep scores a trial's checkpoints with the same functions while it trains.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import tracking
from core.fileio import atomic_open, atomic_write_json, locked
from core.origin import file_sha256
from pipeline import label_scoring
from pipeline.checkpoints import (
    CHECKPOINT,
    SELECTION,
    WEIGHT_FILES,
    checkpoint_problem,
    read_selection,
    state_sha256,
)
from pipeline.errors import RunError
from pipeline.run import Run, stage_main, stage_parser

METRICS = ("accuracy", "mcc", "macro_f1")


@dataclass(frozen=True)
class Candidate:
    """A scorable adapter of a run: `checkpoint-N` or the run's own (`final`)."""

    name: str
    step: int | None
    path: Path
    state_sha256: str | None


def global_step(folder: Path) -> int | None:
    import json

    try:
        return int(json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def candidates(run_dir: Path, final: bool = True) -> list[Candidate]:
    """The complete checkpoints of `run_dir` by step, then its final adapter (where training finished)."""
    if not run_dir.is_dir():
        return []
    found = sorted(
        (int(m.group(1)), path)
        for path in run_dir.iterdir()
        if path.is_dir() and (m := CHECKPOINT.match(path.name)) and checkpoint_problem(path) is None
    )
    out = [Candidate(path.name, step, path, state_sha256(path)) for step, path in found]
    finished = (run_dir / "adapter_config.json").is_file() and any((run_dir / n).is_file() for n in WEIGHT_FILES)
    if final and finished:
        out.append(Candidate("final", global_step(run_dir), run_dir, state_sha256(run_dir)))
    return out


@dataclass(frozen=True)
class ScoringOptions:
    """How a checkpoint is label-scored: the batch size, and how many train rows label scoring fits its per-label
    biases on first (`--calibrate N`, CALIBRATE=N; 0: the raw scores). On an imbalanced task raw scores can put the
    majority label first on every row of every checkpoint (CoLA with SmolLM2: MCC 0 throughout), which leaves
    nothing to choose by; the calibrated figure ranks them."""

    batch_size: int = 16
    calibration_rows: int = 0


RAW_SCORES = ScoringOptions()


def entry_key(candidate: Candidate, data_sha256: str, how: ScoringOptions = RAW_SCORES) -> str:
    """selection.json's key of one figure: the checkpoint, its weights' state, the split's data, the calibration."""
    calibrated = f"|calibrated-{how.calibration_rows}" if how.calibration_rows else ""
    return f"{candidate.name}|{candidate.state_sha256}|{data_sha256}{calibrated}"


def scoring_args(run: Run, out: Path, how: ScoringOptions) -> argparse.Namespace:
    """label_scoring's options (its own parser's defaults) with the predictions written to `out`."""
    argv = ["--task", run.task, "--batch-size", str(how.batch_size)]
    if how.calibration_rows:
        argv += ["--calibrate", "--calibration-rows", str(how.calibration_rows)]
    args = label_scoring.build_parser().parse_args(argv)
    args.out = str(out)
    return args


def score_candidate(
    run: Run, candidate: Candidate, run_dir: Path, data_sha256: str, how: ScoringOptions = RAW_SCORES
) -> dict:
    """Label-score one checkpoint on the run's split; its entry for selection.json (figures, where, when)."""
    out_dir = run_dir / "selection" / run.split
    scoring = run.with_overrides(f"adapter_name_or_path={candidate.path}")
    start = time.perf_counter()
    report = label_scoring.score_split(
        scoring,
        scoring_args(run, out_dir / f"{candidate.name}.csv", how),
        report_json=out_dir / "reports" / f"{candidate.name}.json",
    )
    figures = report["calibrated" if how.calibration_rows else "raw"]["metrics"]
    if figures is None:
        raise RunError(f"{run.data_file()} has rows without a gold output: selection needs a labelled split (dev)")
    return {
        "name": candidate.name,
        "step": candidate.step,
        "path": str(candidate.path),
        "state_sha256": candidate.state_sha256,
        "split": run.split,
        "data_sha256": data_sha256,
        "rows": figures["n"],
        "calibration_rows": how.calibration_rows,
        **{key: round(float(figures[key]), 6) for key in METRICS},
        "seconds": round(time.perf_counter() - start, 1),
        "scored": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def record_entry(run_dir: Path, key: str, entry: dict) -> None:
    """Add one scored checkpoint to selection.json (read, merge, write under a lock: a sweep scores while training)."""
    path = run_dir / SELECTION
    with locked(path):
        selection = read_selection(run_dir)
        selection.setdefault("scored", {})[key] = entry
        atomic_write_json(path, selection)


def scored_entries(
    run: Run, run_dir: Path, found: list[Candidate], how: ScoringOptions = RAW_SCORES, say: Any = print
) -> list[dict]:
    """Each candidate's entry: from selection.json where its key is there, else scored now (and recorded)."""
    data_sha256 = file_sha256(run.data_file())
    entries = []
    for candidate in found:
        key = entry_key(candidate, data_sha256, how)
        entry = read_selection(run_dir).get("scored", {}).get(key)
        if entry is None:
            same = same_weights(candidate, found, run_dir, data_sha256, how)
            if same is not None:  # the final adapter is the last checkpoint's weights: no second scoring
                entry = {**same, "name": candidate.name, "path": str(candidate.path), "same_as": same["name"]}
                entry["state_sha256"] = candidate.state_sha256
            else:
                say(f"[select] scoring {candidate.name} (step {candidate.step}) on {run.task}_{run.split}")
                entry = score_candidate(run, candidate, run_dir, data_sha256, how)
            record_entry(run_dir, key, entry)
        entries.append(entry)
    return entries


def same_weights(
    candidate: Candidate, found: list[Candidate], run_dir: Path, data_sha256: str, how: ScoringOptions
) -> dict | None:
    """The scored entry of the checkpoint whose adapter weights are byte-equal to the final adapter's, else None."""
    if candidate.name != "final":
        return None
    weights = candidate.path / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    digest = file_sha256(weights)
    scored = read_selection(run_dir).get("scored", {})
    for other in found:
        twin = other.path / "adapter_model.safetensors"
        if other.step == candidate.step and other is not candidate and twin.is_file() and file_sha256(twin) == digest:
            return scored.get(entry_key(other, data_sha256, how))
    return None


def best_entry(entries: list[dict], metric: str) -> dict:
    """The highest `metric`; a tie goes to the earlier step (fewer steps, the same figure)."""
    return max(entries, key=lambda e: (e[metric], -(e["step"] if e["step"] is not None else 1 << 30)))


def table(entries: list[dict], metric: str, best: dict) -> str:
    lines = [f"  {'step':>6}  {'checkpoint':<18} {'accuracy':>8} {'mcc':>7} {'macro_f1':>8}"]
    for e in entries:
        mark = f"  ← best {metric}" if e is best else ""
        lines.append(
            f"  {e['step'] if e['step'] is not None else '?':>6}  {e['name']:<18} {e['accuracy']:>8.3f} "
            f"{e['mcc']:>7.3f} {e['macro_f1']:>8.3f}{mark}"
        )
    return "\n".join(lines)


def plot_selection(entries: list[dict], metric: str, best: dict, path: Path, title: str) -> None:
    """metric vs step (the final adapter as a square), the best one circled; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [e for e in entries if e["step"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    checkpoints = [e for e in points if e["name"] != "final"]
    ax.plot([e["step"] for e in checkpoints], [e[metric] for e in checkpoints], "o-", label="checkpoint-N")
    finals = [e for e in points if e["name"] == "final"]
    ax.plot([e["step"] for e in finals], [e[metric] for e in finals], "s", label="final adapter")
    if best["step"] is not None:
        ax.plot([best["step"]], [best[metric]], "o", ms=14, mfc="none", mec="red", label=f"best: {best['name']}")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def select(run: Run, run_dir: Path | None = None, metric: str | None = None, how: ScoringOptions = RAW_SCORES) -> dict:
    """Score every checkpoint of the run (new ones only), print the table, draw the plot, record the best."""
    if "adapter_name_or_path" in run.override_dict or run.checkpoint:
        raise RunError(
            "select scores every checkpoint of the run itself: leave out adapter_name_or_path= and CHECKPOINT="
        )
    run_dir = run_dir or run.stage_dir("train")
    metric = metric or (run.spec.metric if run.spec is not None else "accuracy")
    if metric not in METRICS:
        raise RunError(f"--metric {metric}: expected one of {', '.join(METRICS)}")
    found = candidates(run_dir)
    if not found:
        raise RunError(
            f"{run_dir} holds no complete checkpoint-N and no finished adapter: train first "
            f"(make train MODEL={run.model} TASK={run.task})"
        )
    entries = scored_entries(run, run_dir, found, how)
    best = best_entry(entries, metric)
    calibrated = f", calibrated on {how.calibration_rows} train rows" if how.calibration_rows else ""
    print(
        f"[select] {run.model} on {run.task}_{run.split} ({entries[0]['rows']} rows{calibrated}), picked by {metric}:"
    )
    print(table(entries, metric, best))
    plot = run_dir / "selection.png"
    plot_selection(entries, metric, best, plot, f"{run.model} on {run.task}_{run.split}: {metric} by step")
    with locked(run_dir / SELECTION):
        selection = read_selection(run_dir)
        selection.update(
            run=str(run_dir),
            best={**best, "metric": metric, "value": best[metric]},
            latest=[entry_key(c, best["data_sha256"], how) for c in found],
        )
        atomic_write_json(run_dir / SELECTION, selection)
    series = {key: [(int(e["step"]), e[key]) for e in entries if e.get(key) is not None] for key in METRICS}
    tracking.record(
        "select",
        run.task,
        f"select {run.model} {run.split}",
        params={
            "metric": metric,
            "split": run.split,
            "checkpoints": len(entries),
            "calibration_rows": how.calibration_rows,
        },
        metrics={f"best_{metric}": best[metric], "best_step": best["step"]},
        series={key: points for key, points in series.items() if points},
        tags={"folder": str(run_dir), "model": run.model, "split": run.split, "best": best["name"]},
        artifacts=[plot, run_dir / SELECTION],
    )
    print(
        f"[select] best: {best['name']} (step {best['step']}, {metric} {best[metric]:.3f}) → "
        f"make predict|export MODEL={run.model} TASK={run.task} CHECKPOINT=best; figures in "
        f"{run_dir / SELECTION}, plot {plot}"
    )
    return best


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("python -m pipeline.select", __doc__, limit=False)
    parser.set_defaults(split="dev")
    parser.add_argument("--metric", choices=METRICS, help="what picks the best (default: the task's, MCC for CoLA)")
    parser.add_argument("--batch-size", type=int, default=16)
    add_calibrate(parser)
    args = parser.parse_intermixed_args(argv)
    how = ScoringOptions(args.batch_size, args.calibrate)
    return stage_main(lambda: select(Run.from_args(args), metric=args.metric, how=how))


def add_calibrate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calibrate",
        type=int,
        default=0,
        metavar="N",
        help="each figure after label scoring's per-label biases fitted on N train rows (CALIBRATE=N; imbalanced "
        "labels such as CoLA's); default 0: raw scores",
    )


if __name__ == "__main__":
    sys.exit(main())
