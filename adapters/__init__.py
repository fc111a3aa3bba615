"""Competition files → LLaMA-Factory alpaca datasets, registered in `data/dataset_info.json`.

One module per competition format (judge, glue, logic, paper, qa); each registers itself here by task name,
the way LLaMA-Factory's `data/converter.py` registers its converters, and the CLI (`python -m adapters TASK`)
looks the task up in `ADAPTERS`.

Each run writes `DATA/NAME_{split}.json` (a JSON list of `{"id", "instruction", "input", "output"}` records,
plus `"system"` where the format has one and `"dimension"` for judge) for the splits given, the report
`DATA/NAME_report.json`, and then the `NAME_{split}` entries of `DATA/dataset_info.json`. The paper task
writes two datasets per split, `NAME_cls_{split}` (medical or not) and `NAME_kw_{split}` (keywords).
Only the keys a run writes are replaced in `dataset_info.json`; every other entry is kept as it was.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import Part


@dataclass(frozen=True)
class Adapter:
    """A task: `convert(path, split, args)` turns one competition file into the Parts (datasets) of one split."""

    name: str
    help: str
    convert: Callable[[Path, str, argparse.Namespace], list[Part]]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


ADAPTERS: dict[str, Adapter] = {}


def register_adapter(
    name: str,
    convert: Callable[[Path, str, argparse.Namespace], list[Part]],
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Adapter:
    if name in ADAPTERS:
        raise ValueError(f"adapter {name!r} is already registered")
    adapter = Adapter(name, help, convert, add_arguments)
    ADAPTERS[name] = adapter
    return adapter


def _load_builtin() -> None:
    from . import glue, judge, logic, paper, qa  # noqa: F401  (each module registers itself)


_load_builtin()

# Importing adapters registers the built-in tasks (each competition module registers its TaskSpec beside its
# converter); later stages look tasks up through these names.
from core.tasks import TASKS, TaskSpec, find_task, get_task, register_task  # noqa: E402

__all__ = ["ADAPTERS", "TASKS", "Adapter", "TaskSpec", "find_task", "get_task", "register_adapter", "register_task"]
