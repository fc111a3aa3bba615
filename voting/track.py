"""What the voting commands record in the tracking store (core/tracking.py): one run per vote, self-consistency
vote, metrics, report and submission, with its member runs linked, its rule or method, its figures, and the file it
wrote as an artifact."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core import tracking


def numbers(summary: Mapping[str, Any]) -> dict[str, float]:
    """Every number in the command's summary (nested keys dotted), as a metric."""
    return {
        key: float(value)
        for key, value in tracking.flatten(summary).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def member_runs(task: str, files: list[str]) -> str:
    """The tracked runs that wrote the member files (predict, score, baseline), as `file=run_id` pairs."""
    pairs = []
    for path in files:
        run_id = tracking.latest_run_id(task, predictions=str(path))
        pairs.append(f"{Path(path).name}={run_id or 'untracked'}")
    return ", ".join(pairs)


def record_command(command: str, args: argparse.Namespace, summary: Mapping[str, Any], start: float) -> None:
    """Record one finished voting command (nothing when tracking is off)."""
    if not tracking.enabled():
        return
    task = getattr(args, "task", None) or getattr(args, "submit_task", None) or "untasked"
    files = [str(f) for f in getattr(args, "files", None) or [getattr(args, "pred", None)] if f]
    params = {
        key: getattr(args, key)
        for key in ("tie_breaker", "weights", "soft", "unparsed", "max_unparsed", "gold", "limit", "test", "keywords")
        if getattr(args, key, None) not in (None, False, "")
    }
    params["rule"] = "soft vote" if getattr(args, "soft", False) else "plurality with a tie-breaker"
    tags = {"members": member_runs(task, files)} if files else {}
    tags.update({key: str(summary[key]) for key in ("tie_breaker", "tie_breaker_why") if key in summary})
    out = summary.get("out") or getattr(args, "out", None)
    if isinstance(out, list):  # report: the files it wrote into the --out folder, read below
        out = getattr(args, "out", None)
    written = [Path(out)] if out and Path(out).is_file() else []
    if command == "report" and getattr(args, "out", None):
        written = [p for p in Path(args.out).glob("*") if p.is_file()]
    if out:
        tags["predictions" if command in ("vote", "self-consistency") else "output"] = str(out)
    name = {"score": "metrics"}.get(command, command)
    tracking.record(
        name, task, f"{name} {task}", params=params, metrics=numbers(summary), tags=tags, artifacts=written, start=start
    )
