"""Competition files → LLaMA-Factory alpaca datasets, registered in `data/dataset_info.json`.

One module per competition format (judge, glue, logic, paper, qa); each registers its converter
(`adapters.registry.register_adapter`) and its TaskSpec (`core.tasks.register_task`) where it is defined, the way
LLaMA-Factory's `data/converter.py` registers its converters; both registries load the built-in modules on their
first lookup, and the CLI (`python -m adapters TASK`) looks the task up in `ADAPTERS`.

Each run writes `DATA/NAME_{split}.json` (a JSON list of `{"id", "instruction", "input", "output"}` records,
plus `"system"` where the format has one and `"dimension"` for judge) for the splits given, the report
`DATA/NAME_report.json`, and then the `NAME_{split}` entries of `DATA/dataset_info.json`. The paper task
writes two datasets per split, `NAME_cls_{split}` (medical or not) and `NAME_kw_{split}` (keywords).
Only the keys a run writes are replaced in `dataset_info.json`; every other entry is kept as it was.
"""

from __future__ import annotations

from adapters.registry import ADAPTERS, Adapter, register_adapter
from core.tasks import TASKS, TaskSpec, find_task, get_task, register_task

__all__ = ["ADAPTERS", "TASKS", "Adapter", "TaskSpec", "find_task", "get_task", "register_adapter", "register_task"]
