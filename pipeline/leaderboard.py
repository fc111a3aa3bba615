"""Runs side by side: `llmcomp runs --task T [--json]` (make runs TASK=t), `llmcomp track import [FOLDER ...]`
(runs made with TRACK=0) and `llmcomp track ui` (MLflow's UI on the embedded store, make tracking-ui)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from core import tracking
from pipeline.checks import is_loopback
from pipeline.run import stage_main
from pipeline.track import import_folders

# the metric a task's runs are ranked by: the first of these any run has (higher is better)
RANKED_BY = ("mcc", "accuracy", "macro_f1", "keyword_f1", "char_f1", "rouge_l", "exact_match")
COLUMNS = ("run", "model", "fold", "steps", "data", "metric", "rows/s", "seconds", "status", "id")


def leaderboard(task: str, metric: str | None = None) -> tuple[str | None, list[dict[str, Any]]]:
    """(the metric ranked by, one row per run of the task, best first; runs without it last, newest first)."""
    runs = tracking.find_runs(task)
    metric = metric or next((m for m in RANKED_BY if any(m in r.data.metrics for r in runs)), None)
    rows = []
    for r in runs:
        tags, metrics = r.data.tags, r.data.metrics
        data = next((v for k, v in tags.items() if k.startswith(f"{tracking.TAG}data.") and "train" in k), "")
        rows.append(
            {
                "run": tags.get("mlflow.runName", ""),
                "model": tags.get(f"{tracking.TAG}model", ""),
                "fold": tags.get(f"{tracking.TAG}fold", ""),
                "steps": metrics.get("steps"),
                "data": data[:8],
                "metric": metrics.get(metric) if metric else None,
                "rows/s": metrics.get("rows_per_second"),
                "seconds": metrics.get("wall_seconds", metrics.get("seconds")),
                "status": tags.get(f"{tracking.TAG}status", r.info.status),
                "id": r.info.run_id,
            }
        )
    rows.sort(key=lambda row: (row["metric"] is None, -(row["metric"] or 0.0)))
    return metric, rows


def shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def print_table(metric: str | None, rows: list[dict[str, Any]]) -> None:
    head = [c if c != "metric" else (metric or "metric") for c in COLUMNS]
    table = [head] + [[shown(row[c]) for c in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def runs_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmcomp runs", description=__doc__)
    parser.add_argument("--task", required=True, help="the task (dataset name) whose runs to list")
    parser.add_argument("--metric", help=f"rank by this metric (default: the first of {', '.join(RANKED_BY)})")
    parser.add_argument("--json", action="store_true", help="one JSON object for scripts")
    args = parser.parse_args(argv)
    metric, rows = leaderboard(args.task, args.metric)
    if args.json:
        print(json.dumps({"task": args.task, "metric": metric, "runs": rows}, ensure_ascii=False))
    elif rows:
        print_table(metric, rows)
    else:
        print(f"[runs] no tracked runs of {args.task} in {tracking.tracking_uri()}", file=sys.stderr)
    return 0


def ui(host: str, port: int) -> int:
    """MLflow's UI on the store (the embedded one created first), in this process's place."""
    if not is_loopback(host):
        print(f"[tracking-ui] WARNING: listening on {host}: anyone who can reach port {port} reads every run")
    if tracking.embedded():
        with tracking.store_lock():
            tracking.experiment_id(tracking.client(), "Default")  # creates the database and its tables once
    tracking.quiet_mlflow()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking.tracking_uri()]
    if tracking.embedded():
        command += ["--default-artifact-root", tracking.artifact_root()]
    command += ["--host", host, "--port", str(port), "--workers", "1"]  # one reader: MLflow's default is 4
    print(f"[tracking-ui] {tracking.tracking_uri()} → http://{host}:{port}", flush=True)
    os.execv(command[0], command)


def track_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmcomp track", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import", help="record run folders the store does not have (default: saves/)")
    imp.add_argument("folders", nargs="*", type=Path, default=[Path("saves")])
    show = commands.add_parser("ui", help="MLflow's UI on the store (127.0.0.1:5000)")
    show.add_argument("--host", default="127.0.0.1")
    show.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.command == "ui":
        return stage_main(lambda: ui(args.host, args.port))
    for folder, run_id in import_folders(args.folders):
        print(f"[track] {folder} → {run_id or 'not recorded (see the warning)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`runs ...` or `track ...` (the front door puts the word in front)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["runs"]:
        return runs_main(argv[1:])
    if argv[:1] == ["track"]:
        return track_main(argv[1:])
    print("usage: python -m pipeline.leaderboard runs|track ...", file=sys.stderr)
    return 2
