"""`python -m adapters ADAPTER --train FILE [--dev FILE] [--test FILE] --task NAME [--data-dir data] [options]`.

ADAPTER is the file format (judge, cola, qqp, logic, paper, qa); `--task NAME` (old spelling `--name`) the dataset
name every later stage takes as its TASK. Writes DATA/NAME_{split}.json, DATA/NAME_report.json and the
NAME_{split} entries of DATA/dataset_info.json.
Bad input: a message naming file, row and column on stderr, exit code 2, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adapters.registry import ADAPTERS
from adapters.report import cutoff_warnings, format_report
from adapters.writing import run_conversion
from core import InputError, positive_int
from core.paths import preset_cutoff_len
from core.tasks import TASKS, embedded_model

DEFAULT_CUTOFF = 1024  # where the model has no preset to read its cutoff_len from
EXAMPLES = """examples:
  python -m adapters judge --train train.csv --test test_A.csv --name df1032
  python -m adapters cola --train in_domain_train.tsv --dev in_domain_dev.tsv --name cola \\
      --max-train 2000 --stratify --first-dev 150
  python -m adapters logic --train round1_train_data.jsonl --test round1_test_data.jsonl --name logic
  python -m adapters paper --train train.csv --test testB.csv --name paper   # paper_cls_*, paper_kw_*
  python -m adapters qa --train output.jsonl --name gongkao --drop-duplicates --dev-share 0.1   # → gongkao_dev
then e.g. `llamafactory-cli train ... dataset_dir: data, dataset: df1032_train`."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adapters",
        description="Convert competition files into LLaMA-Factory datasets registered in DATA/dataset_info.json.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = parser.add_subparsers(dest="adapter", required=True, metavar="ADAPTER")
    for adapter in ADAPTERS.values():
        task = tasks.add_parser(adapter.name, help=adapter.help, description=adapter.help)
        task.add_argument("--train", type=Path, metavar="FILE", help="labelled training file")
        task.add_argument("--dev", type=Path, metavar="FILE", help="labelled validation file")
        task.add_argument("--test", type=Path, metavar="FILE", help="test file (labels kept when present)")
        task.add_argument(
            "--task", "--name", dest="name", required=True, help="the dataset name: writes TASK_train.json etc."
        )
        task.add_argument(
            "--data-dir", type=Path, default=Path("data"), help="LLaMA-Factory dataset_dir (default data)"
        )
        task.add_argument(
            "--tokenizer",
            metavar="PATH",
            help="tokenizer for the length report and --fit-cutoff (default: the task's embedded model, "
            "models/gemma3 for Chinese tasks, models/smollm2 otherwise, when present; 'none' skips it)",
        )
        task.add_argument(
            "--model",
            help="the model that will train on this data (default: the task's embedded model, as make's MODEL=): "
            "its preset's cutoff_len is --cutoff-len's default, and models/MODEL its tokenizer where present",
        )
        task.add_argument(
            "--cutoff-len",
            type=int,
            help="cutoff_len to check lengths against and --fit-cutoff to (default: the --model preset's)",
        )
        task.add_argument(
            "--fit-cutoff",
            action="store_true",
            help="trim each record's input (head kept) so the templated example fits --cutoff-len; "
            "LLaMA-Factory would cut the prompt's tail, assistant header included",
        )
        task.add_argument(
            "--drop-duplicates",
            action="store_true",
            help="drop train records repeating an earlier one (text and output); listed in the report",
        )
        task.add_argument(
            "--limit",
            type=positive_int,
            metavar="N",
            help="keep the first N records of each split (a trial run; the report says so)",
        )
        task.add_argument(
            "--max-per-label",
            type=positive_int,
            metavar="N",
            help="keep at most N train records per output label (a seeded sample): balanced training data "
            "against a majority class",
        )
        if adapter.add_arguments is not None:
            adapter.add_arguments(task)
    return parser


def training_model(args: argparse.Namespace) -> tuple[str, int, str]:
    """(the model that will train, the cutoff_len to fit to, where that length comes from)."""
    model = args.model or embedded_model(TASKS.get(args.adapter))
    if args.cutoff_len is not None:
        return model, args.cutoff_len, "--cutoff-len"
    preset = preset_cutoff_len(model)
    if preset is None:
        return model, DEFAULT_CUTOFF, f"no preset factory_configs/{model}: {DEFAULT_CUTOFF}"
    return model, preset, f"factory_configs/{model}/lora_sft.yaml, the length {model} trains on"


def convert(args: argparse.Namespace) -> dict:
    """Convert the files the arguments name; the conversion report (nothing is written on an error)."""
    files = {split: getattr(args, split) for split in ("train", "dev", "test") if getattr(args, split) is not None}
    args.model, args.cutoff_len, args.cutoff_from = training_model(args)
    return run_conversion(
        ADAPTERS[args.adapter],
        files,
        args.name,
        args.data_dir,
        args,
        tokenizer=args.tokenizer,
        cutoff_len=args.cutoff_len,
        drop_duplicate_rows=args.drop_duplicates,
        fit_cutoff=args.fit_cutoff,
        limit=args.limit,
        max_per_label=args.max_per_label,
        model=args.model,
        cutoff_from=args.cutoff_from,
    )


def print_report(report: dict, args: argparse.Namespace) -> None:
    print(format_report(report))
    for warning in cutoff_warnings(report):
        print(warning, file=sys.stderr)
    written = ", ".join(f"{dataset}.json" for dataset in report["registered"])
    print(
        f"wrote {written}, {args.name}_report.json in {args.data_dir}/; "
        f"registered {', '.join(report['registered'])} in {args.data_dir}/dataset_info.json"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = convert(args)
    except InputError as err:  # AdapterError and OutputError (a folder that cannot be written) included
        print(f"error: {err}\nnothing was written.", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. a read-only --data-dir met while creating its lock
        print(f"error: {err.filename or args.data_dir}: {err.strerror or err}\nnothing was written.", file=sys.stderr)
        return 2
    print_report(report, args)
    return 0
