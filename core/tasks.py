"""What a competition is, in one frozen spec per task, found by name: `register_task(spec)`, `get_task(name)`.

Like LLaMA-Factory's template registry (`data/template.py`): each competition module in adapters/ registers its
converter and its TaskSpec side by side, and every later stage (label scoring, self-consistency, voting, the
submission) reads the task from here instead of keeping its own copy of the label set, the group column, the
option letters or the file format. Adding a competition is one module and one `register_task`.

The adapter also writes the task's name into each dataset's entry of `dataset_info.json` (`"task": "qa"`;
LLaMA-Factory ignores keys it does not know), so a dataset named `gk` is found to be "qa" without a name rule:
see `core.records.task_of_dataset`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import InputError
from core.registry import LazyRegistry

LabelRules = tuple[tuple[str, ...] | None, Mapping[str, str]]
Record = Mapping[str, Any]
# path, test records, id → label, extras (source=..., keywords=...) → a summary dict
SubmissionWriter = Callable[..., dict[str, Any]]

BINARY = ("0", "1")
BINARY_SYNONYMS: Mapping[str, str] = {
    "yes": "1",
    "no": "0",
    "true": "1",
    "false": "0",
    "y": "1",
    "n": "0",
    "是": "1",
    "否": "0",
    "对": "1",
    "错": "0",
    "正确": "1",
    "错误": "0",
}


class TaskError(InputError):
    """An unknown task, or a record the task cannot read (a group it does not know)."""


@dataclass(frozen=True)
class TaskSpec:
    """A competition's labels and rules. `labels` None means free-text answers (qa, keywords)."""

    name: str
    labels: tuple[str, ...] | None
    synonyms: Mapping[str, str] = field(default_factory=dict)
    # a record key naming each row's group, with a label set per group (judge: dimension → 1–5 or 0/1)
    group_col: str | None = None
    groups: Mapping[str, LabelRules] = field(default_factory=dict)
    # rows of these groups take the tie-breaker's label directly (judge: 选择题)
    tie_breaker_only: tuple[str, ...] = ()
    # a record's own candidates, where they vary per record (logic: the record's option letters)
    candidates_of: Callable[[Record], tuple[str, ...]] | None = None
    # the rows that belong together and never fall into two cross-validation folds (logic: one problem's questions)
    fold_group_of: Callable[[Record], str] | None = None
    # the competition's submission file: its default name and the writer (adapters' module for the task)
    submission_name: str | None = None
    write_submission: SubmissionWriter | None = None
    # files the writer writes beside the submission file (logic: answer.txt); a failed submit removes them too
    submission_companions: tuple[str, ...] = ()
    # the task of each extra file the submission reads, by its option (paper: keywords → the keywords task)
    extra_tasks: Mapping[str, str] = field(default_factory=dict)
    # how free-text answers are scored (core.metrics.free_text_metrics): "text", "keywords" or "qa"
    text_metrics: str = "text"
    # the figure that picks a checkpoint (make select) and a sweep's best trial: a core.metrics.label_metrics key
    metric: str = "accuracy"
    help: str = ""
    # the language of the task's text ("en", "zh"): picks the embedded CPU model when no MODEL is given
    language: str = "en"

    @property
    def free_text(self) -> bool:
        return self.labels is None

    @property
    def numeric(self) -> bool:
        return self.labels is not None and all(re.fullmatch(r"-?\d+", label) for label in self.labels)

    def rules_for(self, group: str | None) -> LabelRules:
        """(labels, synonyms) for a row of `group`; KeyError for a group the task does not know."""
        if not self.groups or group is None or group == "":
            return self.labels, self.synonyms
        return self.groups[group]

    def group_of(self, record: Record) -> str | None:
        return None if self.group_col is None else record.get(self.group_col)

    def candidates(self, record: Record) -> tuple[str, ...]:
        """The labels a record may take: its own (logic), its group's (judge), else the task's."""
        if self.candidates_of is not None:
            return self.candidates_of(record)
        try:
            labels, _ = self.rules_for(self.group_of(record))
        except KeyError:
            raise TaskError(
                f"record id {record.get('id')}: {self.group_col} is {self.group_of(record)!r}, "
                f"expected one of {', '.join(self.groups)}"
            ) from None
        if labels is None:
            raise TaskError(f"task {self.name} has free-text answers, no candidate labels")
        return labels

    def submission_path(self, out: str | Path) -> Path:
        """`out` itself, or `out/<the task's file name>` when `out` is a folder (exists, ends in /, or no suffix)."""
        text, path = str(out), Path(out)
        if path.is_dir() or text.endswith(("/", "\\")) or not path.suffix:
            if not self.submission_name:
                raise TaskError(f"task {self.name} has no submission format")
            return path / self.submission_name
        return path


# The built-in competitions register their specs in the modules that define them (adapters/judge.py, ...), as
# LLaMA-Factory registers each template where it is defined; the registry imports them on its first lookup, so no
# caller imports a package for its side effects.
BUILTIN_TASK_MODULES = ("adapters.judge", "adapters.glue", "adapters.logic", "adapters.paper", "adapters.qa")


def load_builtin_tasks() -> None:
    for module in BUILTIN_TASK_MODULES:
        importlib.import_module(module)


TASKS: LazyRegistry[TaskSpec] = LazyRegistry(load_builtin_tasks)
# The embedded CPU model per task language, where MODEL=/--model is not given: the measured winner (README,
# "Measured here", bench/quality.py). Chinese: Gemma 3 270M (logic zero-shot 0.429 vs SmolLM2 0.386, QA char F1
# 0.109 vs 0.037 after the same 1000-row LoRA, which it trained in 0.6x the time; judge fluency a tie: neither
# beats the majority score). English: SmolLM2 (CoLA MCC 0.142 vs Gemma 3's 0.119 after ~10 min of training).
EMBEDDED_MODEL = {"en": "smollm2", "zh": "gemma3"}


def register_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    try:
        return TASKS.register(spec.name, spec, replace)
    except ValueError:
        raise ValueError(f"task {spec.name!r} is already registered") from None


def get_task(name: str) -> TaskSpec:
    """The registered spec (the built-in competitions are loaded on the first lookup)."""
    try:
        return TASKS[name]
    except KeyError:
        raise TaskError(
            f"unknown task {name!r}; registered tasks: {', '.join(sorted(TASKS)) or 'none'} "
            "(a dataset name is looked up in DATA/dataset_info.json)"
        ) from None


def labels_task(labels: str) -> TaskSpec:
    """An unregistered closed-set task from `--labels 1,2,3`."""
    values = tuple(dict.fromkeys(value.strip() for value in labels.split(",") if value.strip()))
    if len(values) < 2:
        raise TaskError(f"--labels {labels!r}: expected at least two comma-separated labels")
    return TaskSpec("labels", values, BINARY_SYNONYMS if set(values) == set(BINARY) else {})


TEXT = TaskSpec("text", None)  # --text: free-text answers
RAW = TaskSpec("raw", None)  # no task given: the stripped text is the label, and no set is checked


def embedded_model(spec: TaskSpec | None) -> str:
    """The embedded CPU model for a task's language; English's where the task is unknown (no data converted yet)."""
    language = spec.language if spec is not None else "en"
    return EMBEDDED_MODEL.get(language, EMBEDDED_MODEL["en"])


def default_model(name: str, data_dir: str | Path = "data") -> str:
    """The embedded model for a task or dataset name."""
    try:
        return embedded_model(find_task(name, data_dir))
    except TaskError:
        return embedded_model(None)


def find_task(name: str, data_dir: str | Path = "data") -> TaskSpec:
    """A registered task by its name, or the task the adapter recorded for the dataset `name` (`gk` → qa)."""
    if name in TASKS:
        return TASKS[name]
    from core.records import task_of_dataset

    recorded = task_of_dataset(name, data_dir)
    if recorded is None:
        raise TaskError(
            f"unknown task {name!r}: not a registered task ({', '.join(sorted(TASKS))}) and no dataset "
            f"{name}_train/_test in {Path(data_dir) / 'dataset_info.json'} records one"
        )
    return get_task(recorded)
