"""The arguments every stage shares, declared once and resolved once into a frozen `Run`.

    --model M   a factory_configs/ preset (default: the task's embedded CPU model, core/tasks.py EMBEDDED_MODEL)
    --task T    the dataset name (DATA/T_train.json, T_test.json, ...) whose recorded task gives labels and groups
    --data-dir  the datasets' folder, LLaMA-Factory's dataset_dir (default data; DATA_DIR= in make)
    --split S   which split a stage reads (default test)       --limit N   the first N rows only (a trial run)
    key=value   LLaMA-Factory overrides of the preset, applied last

A stage's `main` parses with `stage_parser`, resolves with `Run.from_args` and calls the stage with the Run
(torchtune's recipe_main): the task is looked up once, the default model chosen once, the generation budget read
once (and only by the stages that generate).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from core import InputError, positive_int
from core.origin import record_origin
from core.paths import DATA_DIR, check_plain_name, predictions_csv, stage_dir
from core.records import dataset_file
from core.tasks import TaskError, TaskSpec, embedded_model, find_task
from pipeline.checkpoints import chosen_checkpoint
from pipeline.errors import RunError
from pipeline.presets import Budget, generation_budget, parse_overrides, resolve_config

MODEL_HELP = "a factory_configs/ preset (default: the task's embedded CPU model, core/tasks.py EMBEDDED_MODEL)"


@dataclasses.dataclass(frozen=True)
class Run:
    """One resolved run: which model on which dataset, where its data is, which split and rows, the overrides."""

    model: str
    task: str
    data_dir: Path = DATA_DIR
    split: str = "test"
    limit: int | None = None
    overrides: tuple[str, ...] = ()
    spec: TaskSpec | None = None  # the dataset's recorded task; None where none is recorded (a hand-made dataset)
    checkpoint: str | None = None  # predict/export/score read this checkpoint of the LoRA run: best, final or a step

    @classmethod
    def resolve(
        cls,
        task: str,
        model: str | None = None,
        data_dir: str | Path | None = None,
        split: str = "test",
        limit: int | None = None,
        overrides: Sequence[str] = (),
        checkpoint: str | None = None,
    ) -> Run:
        """Check the names, look the task up once, and pick the task's embedded model where none is given."""
        try:
            check_plain_name(task, "--task")
            if model:
                check_plain_name(model, "--model")
            check_plain_name(split, "--split")
        except InputError as err:
            raise RunError(str(err)) from None
        given = parse_overrides(list(overrides)).get("dataset_dir")
        folder = Path(data_dir or given or DATA_DIR)  # `dataset_dir=` alone is the data dir, as LLaMA-Factory reads it
        try:
            spec: TaskSpec | None = find_task(task, folder)
        except TaskError:
            spec = None
        return cls(
            model or embedded_model(spec), task, folder, split, limit, tuple(overrides), spec, checkpoint or None
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Run:
        return cls.resolve(
            args.task,
            getattr(args, "model", None),
            args.data_dir,
            getattr(args, "split", "test"),
            getattr(args, "limit", None),
            getattr(args, "overrides", ()),
            getattr(args, "checkpoint", None),
        )

    @cached_property
    def override_dict(self) -> dict[str, Any]:
        return parse_overrides(list(self.overrides))

    @cached_property
    def budget(self) -> Budget:
        """(max_new_tokens, why) from the adapter's report of TASK_train, read once; None where there is none."""
        return generation_budget(self.task, self.data_dir)

    @cached_property
    def checkpoint_choice(self) -> dict | None:
        """CHECKPOINT=: what the manifest records of the adapter read instead of the run's final one (its "path"),
        resolved once (pipeline.checkpoints.chosen_checkpoint); None without --checkpoint."""
        if not self.checkpoint:
            return None
        if "adapter_name_or_path" in self.override_dict:
            raise RunError("give --checkpoint (CHECKPOINT=) or the override adapter_name_or_path=, not both")
        where = f"make select MODEL={self.model} TASK={self.task}"
        return chosen_checkpoint(self.stage_dir("train"), self.checkpoint, where)[1]

    def budget_reason(self, config: dict[str, Any]) -> str:
        """Why a generating stage uses its max_new_tokens: the override, the answers' lengths, or the preset."""
        if "max_new_tokens" in self.override_dict:
            return "your override"
        if self.budget:
            return self.budget[1]
        return (
            f"the preset (no answer lengths in a {config.get('dataset_dir')}/*_report.json; "
            "make data with a tokenizer writes them)"
        )

    def config(
        self,
        stage: str,
        extra: Sequence[str] = (),
        cuda: bool | None = None,
        split: str | None = None,
        generate: bool = True,
    ) -> dict[str, Any]:
        """The stage's preset resolved for this run (pipeline.presets.resolve_config); `extra` overrides come
        before the run's own, which win. `generate=False` (label scoring, self-consistency): the preset's
        max_new_tokens stays, and the generation budget is never read."""
        overrides = {**parse_overrides(list(extra)), **self.override_dict}
        if self.checkpoint_choice and stage in ("predict", "export"):
            overrides["adapter_name_or_path"] = self.checkpoint_choice["path"]
        wants = generate and stage == "predict" and "max_new_tokens" not in overrides
        budget = self.budget if wants else None
        return resolve_config(
            self.model, stage, self.task, overrides, cuda, split or self.split, self.data_dir, budget=budget
        )

    def stage_dir(self, stage: str) -> Path:
        return stage_dir(self.task, self.model, stage)

    def predictions_csv(self, kind: str = "generate") -> Path:
        """This run's predictions file: its split's and trial's own (core.paths.predictions_csv)."""
        return predictions_csv(self.task, self.model, kind, self.split, self.limit)

    def data_file(self, split: str | None = None) -> Path:
        """DATA/TASK_<split>.json, found through dataset_info.json (core.records.dataset_file)."""
        try:
            return dataset_file(f"{self.task}_{split or self.split}", self.data_dir)[0]
        except InputError as err:
            raise RunError(str(err)) from None

    def record_origin(self, csv_path: Path, data_file: Path, rows: int, made_by: str, **extra: Any) -> None:
        """Write csv_path's origin record (core.origin): the dataset, split, trial limit and data hash (+ extra)."""
        record_origin(csv_path, data_file, self.split, self.limit, made_by, rows, **extra)

    def with_model(self, model: str) -> Run:
        """The same run for another model name (the TF-IDF baseline's "tfidf")."""
        return dataclasses.replace(self, model=check_plain_name(model, "--model"))

    def with_overrides(self, *overrides: str) -> Run:
        return dataclasses.replace(self, overrides=(*overrides, *self.overrides))


def run_arguments(
    parser: argparse.ArgumentParser,
    *,
    split: bool = True,
    limit: bool = True,
    overrides: bool = True,
    model: bool = True,
    checkpoint: bool = False,
) -> argparse.ArgumentParser:
    """Add the shared run arguments to `parser` (one declaration for every stage and subcommand)."""
    if model:
        parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--task", default="judge_demo", help="the dataset name (make's TASK=)")
    parser.add_argument("--data-dir", help="the datasets' folder, LLaMA-Factory's dataset_dir (default data)")
    if split:
        parser.add_argument("--split", default="test", help="which split to read: TASK_<split> (default test)")
    if limit:
        parser.add_argument("--limit", type=positive_int, metavar="N", help="the first N rows only (a trial run)")
    if checkpoint:
        parser.add_argument(
            "--checkpoint",
            metavar="best|final|N",
            help="read this checkpoint of saves/TASK/MODEL/lora instead of its final adapter: best (make select's "
            "pick), final, or a step number (make's CHECKPOINT=)",
        )
    if overrides:
        parser.add_argument("overrides", nargs="*", help="LLaMA-Factory key=value overrides, applied last")
    return parser


def stage_parser(
    prog: str,
    doc: str | None,
    *,
    split: bool = True,
    limit: bool = True,
    overrides: bool = True,
    model: bool = True,
    stages: Sequence[str] = (),
    checkpoint: bool = False,
) -> argparse.ArgumentParser:
    """A stage's parser with the shared run arguments; the stage adds its own options after.
    `stages`: a first positional choosing the stage (python -m pipeline train|predict|...)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if stages:
        parser.add_argument("stage", choices=list(stages))
    return run_arguments(parser, split=split, limit=limit, overrides=overrides, model=model, checkpoint=checkpoint)


def stage_main(call: Callable[[], Any]) -> int:
    """Run a stage; a refused run is one line on stderr and exit 2 (a signal: 128 + its number), never a traceback."""
    try:
        result = call()
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except InputError as err:  # a bad name, a file that cannot be read or written (OutputError)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a read-only or full saves/ folder: one line naming the path
        print(f"error: cannot write {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
