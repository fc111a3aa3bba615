"""What label scoring, the API server and self-consistency share: a resolved predict preset reduced to
LLaMA-Factory's inference arguments, and a registered dataset's records."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from core import InputError
from core.paths import DATA_DIR
from core.records import load_dataset
from pipeline.errors import RunError


def infer_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved preset reduced to the keys LLaMA-Factory's inference parser knows; dtype as the predict run's."""
    from llamafactory.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments

    known = {
        f.name
        for cls in (ModelArguments, DataArguments, FinetuningArguments, GeneratingArguments)
        for f in dataclasses.fields(cls)
    }
    args = {key: value for key, value in config.items() if key in known}
    if "infer_dtype" not in config:
        args["infer_dtype"] = "bfloat16" if config.get("bf16") else "float16" if config.get("fp16") else "float32"
    if args.get("adapter_name_or_path") in ("", None):
        args.pop("adapter_name_or_path", None)  # `adapter_name_or_path=` scores the base model
    elif not Path(str(args["adapter_name_or_path"]).split(",")[0]).is_dir():
        raise RunError(
            f"no adapter at {args['adapter_name_or_path']}: train first (make train), or give "
            "adapter_name_or_path=PATH (or an empty value for the base model)"
        )
    return args


def load_records(config: dict[str, Any], name: str) -> tuple[list[dict], Any]:
    """(records, DatasetAttr) of a registered dataset in the config's dataset_dir."""
    try:
        return load_dataset(name, config.get("dataset_dir", DATA_DIR))
    except InputError as err:
        raise RunError(str(err)) from None
