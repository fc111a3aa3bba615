"""Checkpoints of a training folder: which one is complete, which to resume from, and when to start over.

An interrupted save leaves a checkpoint without its trainer state or with truncated weights: such a folder is
moved aside (`checkpoint-N.broken`), never deleted, and the newest complete one is resumed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from pipeline.errors import RunError

RUN_FILES = ("run.yaml", "manifest.json")
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


WEIGHT_FILES = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot load (short header, bad JSON, data shorter than the header says), or None."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{path.name} is {size} bytes, shorter than its header"
        length = int.from_bytes(head, "little")
        if 8 + length > size:
            return f"{path.name} is truncated ({size} bytes; its header alone needs {8 + length})"
        try:
            header = json.loads(handle.read(length))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError):
            return f"{path.name} has an unreadable header"
    if 8 + length + end > size:
        return f"{path.name} is truncated ({size} bytes, its header promises {8 + length + end})"
    return None


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (what an interrupted save leaves), or None if complete."""
    state = path / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "trainer_state.json is not valid JSON"
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        return "no adapter or model weights"
    for weights in sorted(path.glob("*.safetensors")):
        problem = safetensors_problem(weights)
        if problem:
            return problem
    return None


def set_aside(path: Path) -> Path:
    """Rename `path` to `path.broken` (`.broken-2`, ... if taken); it is kept, never deleted."""
    target, n = path.with_name(f"{path.name}.broken"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.broken-{n}")
    path.rename(target)
    return target


def last_complete_checkpoint(out_dir: Path) -> tuple[Path | None, list[str]]:
    """(the newest complete checkpoint-N, notes on each newer broken one, moved aside as checkpoint-N.broken)."""
    numbered = [(int(m.group(1)), p) for p in out_dir.iterdir() if p.is_dir() and (m := CHECKPOINT.match(p.name))]
    notes: list[str] = []
    for _, path in sorted(numbered, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, notes
        moved = set_aside(path)
        notes.append(f"skipped {path.name} ({problem}); moved it to {moved.name}")
    return None, notes


def prepare_train_dir(out_dir: Path, fresh: bool, previous_status: str | None = None) -> tuple[bool, str]:
    """Decide between a fresh start and resumption; never overwrite a finished run silently.

    Resumes from the newest complete checkpoint (a broken newer one is moved aside, never deleted). A run that was
    interrupted before its first checkpoint starts over. Returns (overwrite_output_dir, what happened in words).
    """
    if fresh and out_dir.exists():
        backup = out_dir.with_name(f"{out_dir.name}.bak-{dt.datetime.now():%Y%m%d-%H%M%S}")
        out_dir.rename(backup)
        return True, f"FRESH=1: moved the previous run to {backup}"
    if not out_dir.exists() or all(p.name in RUN_FILES for p in out_dir.iterdir()):
        return True, "fresh start"
    checkpoint, notes = last_complete_checkpoint(out_dir)
    skipped = "".join(f"; {note}" for note in notes)
    if checkpoint is not None:
        return False, f"resuming from {checkpoint}{skipped}"
    finished = any((out_dir / name).is_file() for name in WEIGHT_FILES)
    if not finished and previous_status and not previous_status.startswith("done"):
        return True, f"the previous run ({previous_status}) left no complete checkpoint: starting over{skipped}"
    raise RunError(
        f"{out_dir} already holds a run without complete checkpoints{skipped}; FRESH=1 starts over "
        "(the old folder is kept as a .bak-TIMESTAMP copy)"
    )


SELECTION = "selection.json"  # a run's checkpoint figures, written by pipeline.select (make select)


def state_sha256(folder: Path) -> str | None:
    """sha256 of a checkpoint's (or a finished run's) trainer_state.json: a retrained run has another."""
    from core.origin import file_sha256

    state = folder / "trainer_state.json"
    return file_sha256(state) if state.is_file() else None


def read_selection(run_dir: Path) -> dict:
    """The run's selection.json ({} where there is none or it cannot be read)."""
    path = run_dir / SELECTION
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def chosen_checkpoint(run_dir: Path, which: str, make_select: str = "make select") -> tuple[Path, dict]:
    """(the adapter folder, what the manifest records) for CHECKPOINT=best (make select's pick), a step number
    (checkpoint-N) or `final` (the run's own adapter) of the training run in `run_dir`."""
    if which == "best":
        best = read_selection(run_dir).get("best")
        if not isinstance(best, dict) or not best.get("path"):
            raise RunError(
                f"CHECKPOINT=best: no {run_dir / SELECTION} with a best checkpoint; {make_select} scores every "
                "checkpoint of the run and picks one"
            )
        path = Path(best["path"])
        if not path.is_dir() or state_sha256(path) != best.get("state_sha256"):
            raise RunError(
                f"CHECKPOINT=best: {path} ({best.get('name')}) is gone or was retrained since {run_dir / SELECTION} "
                f"was written; run {make_select} again"
            )
        return path, {"chosen": "best", **{key: best.get(key) for key in ("name", "step", "path", "split", "metric")}}
    if which == "final":
        path = run_dir
    elif which.isdigit():
        path = run_dir / f"checkpoint-{int(which)}"
    else:
        raise RunError(f"CHECKPOINT={which!r}: expected best, final or a step number (checkpoint-N)")
    problem = (
        ("no such folder" if not path.is_dir() else checkpoint_problem(path))
        if path != run_dir
        else (None if (run_dir / "adapter_config.json").is_file() else "no finished adapter (adapter_config.json)")
    )
    if problem:
        steps = sorted(
            int(m.group(1)) for p in (run_dir.iterdir() if run_dir.is_dir() else ()) if (m := CHECKPOINT.match(p.name))
        )
        raise RunError(
            f"CHECKPOINT={which}: {path} cannot be used ({problem}); the run's checkpoints are at steps "
            f"{', '.join(map(str, steps)) or '(none)'}, or CHECKPOINT=final"
        )
    state = path / "trainer_state.json"
    step = json.loads(state.read_text(encoding="utf-8")).get("global_step") if state.is_file() else None
    return path, {"chosen": which, "name": path.name if path != run_dir else "final", "step": step, "path": str(path)}
