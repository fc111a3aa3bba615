"""Every check a run passes before anything is written: LLaMA-Factory's own parser and dataset registry over the
resolved config, override types (converted where unambiguous), CUDA/bitsandbytes for 4-bit, a trained adapter
where predict/export/chat read one, and a loopback host for the servers."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import ipaddress
import os
import re
import sys
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from pipeline.errors import RunError
from pipeline.manifest import REDACTED, is_secret, redact_text
from pipeline.presets import cuda_available
from pipeline.supervise import folder_held_by


def check_config(config: dict[str, Any], stage: str, where: str) -> None:
    """Parse with LLaMA-Factory's own argument parser and dataset registry; on failure say which preset/override.

    Values are first checked (and, where unambiguous, converted: "5e-5" → 5e-05) against the types of
    LLaMA-Factory's argument dataclasses, which its parser does not check for a dict of arguments.
    """
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import get_infer_args, get_train_args

    check_types(config, where)
    checked = dict(config)
    if checked.get("deepspeed"):
        # LLaMA-Factory accepts a DeepSpeed config only inside a torchrun rank; the ranks parse it when they start
        if not Path(str(checked["deepspeed"])).is_file():
            raise RunError(f"{where}: no DeepSpeed config {checked['deepspeed']} (DS=z2|z3|z3_offload)")
        checked.pop("deepspeed")
    try:
        if stage == "export":
            get_infer_args(checked)
        else:
            # Resumption is decided by the runner; the parser must not look at the folder here.
            get_train_args({**checked, "overwrite_output_dir": True})
            names = [name for key in ("dataset", "eval_dataset") for name in str(config.get(key) or "").split(",")]
            get_dataset_list([n.strip() for n in names if n.strip()], config.get("dataset_dir", "data"))
    except (ValueError, TypeError, KeyError) as err:
        raise RunError(f"{where}: LLaMA-Factory rejected the config: {redact_text(str(err), config)}") from None


def argument_types() -> dict[str, Any]:
    """{argument name: its annotated type} over LLaMA-Factory's argument dataclasses (train and infer)."""
    from llamafactory.hparams import (
        DataArguments,
        FinetuningArguments,
        GeneratingArguments,
        ModelArguments,
        TrainingArguments,
    )

    found: dict[str, Any] = {}
    for cls in (ModelArguments, DataArguments, TrainingArguments, FinetuningArguments, GeneratingArguments):
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # an unresolvable annotation somewhere: use each field's own
            hints = {}
        for field in dataclasses.fields(cls):
            found.setdefault(field.name, hints.get(field.name, field.type))
    return found


_NOT = object()


def coerce(value: Any, annotation: Any) -> Any:
    """`value` as `annotation` wants it (int, float, bool, str, Literal, Enum, Optional/Union of these), or _NOT.

    Anything else (a class, a dict, a string annotation) is not checked: LLaMA-Factory's own checks still run.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:  # str last would swallow everything: try the narrow types first
            if arg not in (str, type(None)) and (converted := coerce(value, arg)) is not _NOT:
                return converted
        return coerce(value, str) if str in args else _NOT
    if origin is typing.Literal:
        return next((arg for arg in args if arg == value or str(arg) == str(value)), _NOT)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        return {"true": True, "false": False}.get(str(value).lower(), _NOT) if isinstance(value, str) else _NOT
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return int(value) if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()) else _NOT
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return float(value)
        return _NOT
    if annotation is str:
        if isinstance(value, str):
            return value
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _NOT
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        values = [member.value for member in annotation]
        return value if value in values or isinstance(value, annotation) else _NOT
    if origin in (list, dict):
        return value if isinstance(value, origin) else _NOT
    return value


def _type_name(annotation: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "text"}
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(annotation)))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(str(member.value) for member in annotation)
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if args:
        return " or ".join(dict.fromkeys(_type_name(arg) for arg in args))
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def check_types(config: dict[str, Any], where: str) -> None:
    """Refuse (RunError naming the key) a value of the wrong type; convert unambiguous strings in place."""
    known = argument_types()
    for key, value in list(config.items()):
        if key not in known or value is None:
            continue
        converted = coerce(value, known[key])
        if converted is _NOT:
            shown = REDACTED if is_secret(key) else repr(value)
            raise RunError(
                f"{where}: {key} is {shown}, expected {_type_name(known[key])} (LLaMA-Factory's "
                f"{key}: {getattr(known[key], '__name__', None) or known[key]})"
            )
        config[key] = converted


def check_device(config: dict[str, Any], where: str, cuda: bool | None = None) -> None:
    """4-bit/8-bit loading (QLoRA) needs CUDA and bitsandbytes: say so before anything is written."""
    bits = config.get("quantization_bit")
    if bits is None or str(config.get("quantization_method", "bnb")).lower() not in ("bnb", "bitsandbytes"):
        return
    if not (cuda_available() if cuda is None else cuda):
        raise RunError(
            f"{where}: quantization_bit={bits} (QLoRA) needs a CUDA GPU and bitsandbytes; this machine "
            "has no CUDA device (use make train for LoRA in full precision)"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RunError(
            f"{where}: quantization_bit={bits} (QLoRA) needs bitsandbytes: "
            ".venv/bin/pip install -c constraints.txt bitsandbytes"
        )


def check_adapter(
    config: dict[str, Any], stage: str, model: str = "...", task: str = "...", base: Path | None = None
) -> None:
    """Predict, export and chat read a trained adapter: refuse a local adapter folder that holds none (or one a
    training run is still writing), before starting. `base`: where relative paths are read from (default the cwd)."""
    if stage not in ("predict", "export", "chat") or not config.get("adapter_name_or_path"):
        return
    for name in str(config["adapter_name_or_path"]).split(","):
        path = Path(name.strip())
        # relative to the cwd, else to `base` (chat runs from the repo root)
        found = path if path.exists() or base is None or path.is_absolute() else base / path
        local = found.exists() or path.is_absolute() or path.parts[:1] in (("saves",), (".",), ("..",))
        if not local or (found / "adapter_config.json").is_file():
            continue
        holder = folder_held_by(found)
        if holder:
            raise RunError(
                f"{path} has no finished adapter yet: a training run ({holder}) is writing this folder; "
                "wait for it to finish, or stop it"
            )
        raise RunError(
            f"no trained adapter in {path} (no adapter_config.json): train it first (make train "
            f"MODEL={model} TASK={task}), or use the base model with the override adapter_name_or_path= "
            '(ARGS="adapter_name_or_path=")'
        )


def is_loopback(host: str) -> bool:
    """127.0.0.1, ::1, localhost: a server only this machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


OVER_CUTOFF_REFUSE = 0.05  # the share of rows over cutoff_len above which a run is refused (adapters warn at the same)


def over_cutoff(entry: dict[str, Any], cutoff_len: int) -> float | None:
    """The share of a dataset's rows longer than `cutoff_len`, from its entry in the adapter's report (percentiles
    every 1%, or the exact count where the report was made for this very cutoff_len); None if unknown."""
    tokens = entry.get("tokens") or {}
    if tokens.get("cutoff_len") == cutoff_len and isinstance(tokens.get("over_cutoff"), int) and entry.get("rows_out"):
        return tokens["over_cutoff"] / entry["rows_out"]
    percentiles = tokens.get("percentiles")
    if isinstance(percentiles, list) and len(percentiles) == 101:
        return sum(length > cutoff_len for length in percentiles[1:]) / 100
    return None


def check_cutoff(config: dict[str, Any], stage: str, model: str, task: str, explicit: bool) -> None:
    """Refuse a run whose dataset has more than a few per cent of rows longer than the run's cutoff_len.

    LLaMA-Factory cuts such a prompt's tail, the chat template's answer header included: training learns to
    continue the text, prediction continues it instead of answering. The lengths are the adapter's report's
    (`make data` with a tokenizer); without one nothing is known and nothing is said. A cutoff_len the user set
    (`ARGS=cutoff_len=N`) is their choice: said loudly, not refused.
    """
    from pipeline.presets import report_entry

    key = "dataset" if stage in ("train", "qlora") else "eval_dataset"
    cutoff_len = config.get("cutoff_len")
    if not isinstance(cutoff_len, int):
        return
    for dataset in filter(None, (name.strip() for name in str(config.get(key) or "").split(","))):
        found = report_entry(dataset, config.get("dataset_dir"))
        share = over_cutoff(found[2], cutoff_len) if found else None
        if not share or found is None:
            continue
        tokenizer = found[1].get("tokens", {}).get("tokenizer", "?")
        # the conversion's own make spelling: paper_cls_test comes from `make data TASK=paper`, gk_* from ADAPTER=qa
        name, adapter = found[1].get("name") or task, found[1].get("task")
        data = f"{f'ADAPTER={adapter} ' if adapter and adapter != name else ''}TASK={name}"
        message = (
            f"{share:.0%} of {dataset}'s rows are longer than this run's cutoff_len {cutoff_len} ({tokenizer} "
            f"tokens, {found[0]}): LLaMA-Factory cuts their prompts' tail, the answer header included, so the model "
            f"{'learns to continue the text' if key == 'dataset' else 'continues the text instead of answering'}. "
            f"Fix: convert again fitted to this model (make data {data} MODEL={model} ... "
            f"DATA_ARGS=--fit-cutoff), or raise cutoff_len (ARGS=cutoff_len=N)"
        )
        if share > OVER_CUTOFF_REFUSE and not explicit:
            raise RunError(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def hub_of_model() -> tuple[str, str]:
    """(hub name, host[:port]) LLaMA-Factory downloads from: ModelScope under USE_MODELSCOPE_HUB, else Hugging Face."""
    from urllib.parse import urlparse

    if os.environ.get("USE_MODELSCOPE_HUB", "0").lower() in ("1", "true", "y", "yes"):
        return "ModelScope", os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn")
    return "Hugging Face", urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).netloc


def cached_model(model_id: str) -> bool:
    """Whether a hub id is already in the ModelScope or Hugging Face cache (LLaMA-Factory then loads it offline)."""
    home = Path.home() / ".cache"
    modelscope = Path(os.environ.get("MODELSCOPE_CACHE", home / "modelscope" / "hub"))
    huggingface = Path(os.environ.get("HF_HUB_CACHE", home / "huggingface" / "hub"))
    return (
        (modelscope / model_id).is_dir()
        or (modelscope / "models" / model_id).is_dir()
        or (huggingface / f"models--{model_id.replace('/', '--')}").is_dir()
    )


def check_model_reachable(config: dict[str, Any], model: str, seconds: float = 3.0) -> None:
    """A hub model that is neither a local folder nor cached needs its hub: one short message when it cannot be
    reached (no network, or no access), before any run folder exists, instead of a download traceback."""
    import socket

    model_id = str(config.get("model_name_or_path") or "")
    if not model_id or Path(model_id).exists() or Path(model_id).is_absolute() or cached_model(model_id):
        return
    hub, host = hub_of_model()
    name, _, port = host.partition(":")
    offline = os.environ.get("HF_HUB_OFFLINE", "0") == "1" and hub == "Hugging Face"
    if not offline:
        try:
            socket.create_connection((name, int(port or 443)), timeout=seconds).close()
            return
        except OSError:
            pass
    raise RunError(
        f"model {model_id} (factory_configs/{model}) is not a local folder and {hub} ({host}) cannot be reached: "
        "no network here, or no access. Download it where there is network and give its folder: "
        f"ARGS=model_name_or_path=/path/to/{model_id.rsplit('/', 1)[-1]}"
    )
