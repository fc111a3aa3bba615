"""Run a factory_configs/ preset through llamafactory-cli: resolve it, check it with LLaMA-Factory's own parser,
record the exact YAML and a manifest beside the outputs, then launch it.

    saves/TASK/MODEL/lora/     train (LoRA SFT)            saves/TASK/MODEL/qlora/    qlora (4-bit QLoRA SFT)
    saves/TASK/MODEL/predict/  batch generation (LLaMA-Factory's predict_with_generate)
    saves/TASK/MODEL/merged/   export (LoRA merged into the base model, tokenizer, Ollama Modelfile)

Every check (preset, override types, datasets, adapter, CUDA/bitsandbytes for 4-bit) runs before anything is
written. One run per folder: the runner holds an exclusive lock (`saves/TASK/MODEL/.lora.lock`, holder PIDs inside)
for as long as it or its llamafactory-cli child lives; the child runs in its own process group, receives the
runner's SIGINT/SIGTERM, and is sent SIGTERM by the kernel if the runner dies (Linux). Secrets given as overrides
(`hf_hub_token=...`) reach the child through a private temporary file and are written as `***` everywhere else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import typing
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from core import InputError
from core.fileio import atomic_write_csv, atomic_write_json, atomic_write_text
from core.paths import DATA_DIR, check_plain_name, stage_dir
from core.records import dataset_file, read_records

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "factory_configs"
STAGE_FILES = {"train": "lora_sft.yaml", "qlora": "qlora_sft.yaml", "predict": "predict.yaml", "export": "export.yaml"}
SEED_MODELS = ("glm4", "qwen2", "internlm2_5", "gemma2")  # the winning text-judging entry's four, in its order
PACKAGES = ("llamafactory", "transformers", "peft", "trl", "datasets", "accelerate", "torch")
RUN_FILES = ("run.yaml", "manifest.json")


# a key that names a credential: hf_hub_token, ms_hub_token, om_hub_token, api_key, swanlab_api_key, *_secret,
# *password*; whole words only, so max_new_tokens and use_fast_tokenizer are not secrets
SECRET_KEY = re.compile(r"(^|_)(token|secret|password|passwd|api_?key|access_key)($|_)", re.IGNORECASE)
REDACTED = "***"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


class RunError(RuntimeError):
    """A run that cannot start: bad preset, bad override, an output folder that would be overwritten."""

    exit_code = 2


class RunInterrupted(RunError):
    """The run was stopped by a signal (forwarded to the trainer); exit 128 + the signal's number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def is_secret(key: str) -> bool:
    return bool(SECRET_KEY.search(str(key)))


def redact(value: Any) -> Any:
    """A copy with every secret-named key's value replaced by `***` (nested dicts and lists included)."""
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret(key) and item not in (None, "") else redact(item) for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def task_model(model: str | None, task: str, data_dir: str | Path | None = None) -> str:
    """MODEL as given, else the task's embedded CPU model (core.tasks.default_model, by the task's language)."""
    if model:
        return model
    import adapters  # noqa: F401  (registers the built-in tasks)
    from core.tasks import default_model

    return default_model(task, data_dir or DATA_DIR)


def preset_path(model: str, stage: str) -> Path:
    if stage not in STAGE_FILES:
        raise RunError(f"unknown stage {stage!r}; expected one of {', '.join(STAGE_FILES)}")
    try:
        check_plain_name(model, "--model")
    except InputError as err:
        raise RunError(str(err)) from None
    path = CONFIG_DIR / model / STAGE_FILES[stage]
    if not path.is_file():
        models = sorted(p.name for p in CONFIG_DIR.iterdir() if (p / "lora_sft.yaml").is_file())
        raise RunError(f"no preset {path.relative_to(ROOT)} (models: {', '.join(models)})")
    return path


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`key=value` pairs, values read as YAML scalars (LLaMA-Factory's CLI reads them the same way)."""
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RunError(f"override {item!r} is not key=value")
        parsed[key.strip()] = yaml.safe_load(value) if value else ""
    return parsed


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_config(
    model: str,
    stage: str,
    task: str,
    overrides: dict[str, Any] | None = None,
    cuda: bool | None = None,
    split: str = "test",
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The preset with the task's datasets and folders filled in, precision set for the device, overrides last.

    `data_dir` (every CLI's `--data-dir`) is LLaMA-Factory's `dataset_dir`; giving both it and a different
    `dataset_dir=` override is refused rather than one silently winning.
    """
    overrides = dict(overrides or {})
    if data_dir is not None and "dataset_dir" in overrides and str(overrides["dataset_dir"]) != str(data_dir):
        raise RunError(
            f"--data-dir {data_dir} and the override dataset_dir={overrides['dataset_dir']} disagree; give one"
        )
    config = yaml.safe_load(preset_path(model, stage).read_text(encoding="utf-8"))
    try:
        check_plain_name(task, "--task")
    except InputError as err:
        raise RunError(str(err)) from None
    if stage != "export":
        config["dataset_dir"] = str(data_dir or overrides.get("dataset_dir") or config.get("dataset_dir") or DATA_DIR)
    lora_dir = str(stage_dir(task, model, "train"))
    if stage in ("train", "qlora"):  # QLoRA has its own folder: it never overwrites a LoRA run's records
        config.update(dataset=f"{task}_train", output_dir=str(stage_dir(task, model, stage)))
    elif stage == "predict":
        config.update(
            eval_dataset=f"{task}_{split}",
            adapter_name_or_path=lora_dir,
            output_dir=str(stage_dir(task, model, "predict")),
        )
    elif stage == "export":
        config.update(adapter_name_or_path=lora_dir, export_dir=str(stage_dir(task, model, "export")))
    if stage == "predict" and "max_new_tokens" not in overrides:
        budget = generation_budget(task, config["dataset_dir"])
        if budget is not None:
            config["max_new_tokens"] = budget[0]  # the task's answers, not the preset's label-sized cap
    if stage != "export":
        use_cuda = cuda_available() if cuda is None else cuda
        config["bf16"] = bool(use_cuda and config.get("bf16", True))  # kept where CUDA is, off on a CPU; never on
    config.update({key: value for key, value in overrides.items() if key != "dataset_dir"})
    if "adapter_name_or_path" in config and config["adapter_name_or_path"] in ("", None):
        del config["adapter_name_or_path"]  # `adapter_name_or_path=`: the base model (LLaMA-Factory reads "" as a path)
    return config


def generation_budget(task: str, data_dir: str | Path | None = None) -> tuple[int, str] | None:
    """(max_new_tokens, why) from the adapter's report of TASK_train: its answers' p99 tokens + margin; else None.

    The report (DATA/NAME_report.json, written by `make data` with a tokenizer) is found by the dataset it holds,
    so `paper_kw` finds `paper_report.json`.
    """
    data_dir = Path(data_dir or DATA_DIR)
    dataset = f"{task}_train"
    first = data_dir / f"{task}_report.json"
    for path in [first, *sorted(p for p in data_dir.glob("*_report.json") if p != first)]:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        entry = report.get("datasets", {}).get(dataset) if isinstance(report, dict) else None
        answer = (entry or {}).get("tokens", {}).get("answer") if isinstance(entry, dict) else None
        if isinstance(answer, dict) and isinstance(answer.get("max_new_tokens"), int):
            tokenizer = report.get("tokens", {}).get("tokenizer", "?")
            return answer["max_new_tokens"], (
                f"{path}: {dataset}'s answers are {answer['p99']} tokens at the 99th "
                f"percentile ({tokenizer}), plus a margin"
            )
    return None


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


def redact_text(text: str, config: dict[str, Any]) -> str:
    for key, value in config.items():
        if is_secret(key) and isinstance(value, str) and value:
            text = text.replace(value, REDACTED)
    return text


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


def check_adapter(config: dict[str, Any], stage: str) -> None:
    """Predict and export read a trained adapter: refuse a local adapter folder that holds none, before starting."""
    if stage not in ("predict", "export") or not config.get("adapter_name_or_path"):
        return
    for name in str(config["adapter_name_or_path"]).split(","):
        path = Path(name.strip())
        local = path.exists() or path.is_absolute() or path.parts[:1] in (("saves",), (".",), ("..",))
        if local and not (path / "adapter_config.json").is_file():
            raise RunError(
                f"no trained adapter in {path} (no adapter_config.json): train it first (make train "
                "MODEL=... TASK=...), or use the base model with the override adapter_name_or_path="
            )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_hashes(config: dict[str, Any]) -> dict[str, str]:
    """sha256 of every data file the run reads, found through dataset_info.json."""
    dataset_dir = Path(config.get("dataset_dir", DATA_DIR))
    info_path = dataset_dir / "dataset_info.json"
    if not info_path.is_file():
        return {}
    hashes = {str(info_path): file_sha256(info_path)}
    for key in ("dataset", "eval_dataset"):
        for name in filter(None, (n.strip() for n in str(config.get(key) or "").split(","))):
            try:
                path, _ = dataset_file(name, dataset_dir)
            except InputError:
                continue  # a hub dataset, or one the parser check already refused
            if path.is_file():
                hashes[str(path)] = file_sha256(path)
    return hashes


def git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def build_manifest(config: dict[str, Any], command: list[str], preset: Path, overrides: dict[str, Any]) -> dict:
    return {
        "command": command,
        "preset": str(preset.relative_to(ROOT)),
        "overrides": redact(overrides),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "datasets": dataset_hashes(config),
        "seed": config.get("seed"),
        "device": "cuda" if config.get("bf16") else "cpu-or-fp32",
        "pid": os.getpid(),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "ended": None,
        "status": "running",
    }


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
    notes = []
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


class RunLock:
    """One process per run folder: an exclusive flock on saves/TASK/MODEL/.FOLDER.lock, holder PIDs written inside.

    The kernel releases the lock when every holder (the runner, and the trainer it passes the descriptor to) is
    dead, so a crashed run never blocks the next one.
    """

    def __init__(self, out_dir: Path, doing: str) -> None:
        import fcntl

        self.path = out_dir.with_name(f".{out_dir.name}.lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(self.fd, 200, 0).decode(errors="replace").split()
            os.close(self.fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pids = f"PID {holder[0]}" if holder else "another process"
            if len(holder) > 1:
                pids += f" (llamafactory-cli PID {holder[1]})"
            raise RunError(
                f"{out_dir} is being {doing} by {pids}; wait for it to finish or stop it "
                f"(kill -INT {holder[0] if holder else 'PID'}); a second run here would share its files"
            ) from None
        self.note()

    def note(self, child: int | None = None) -> None:
        text = f"{os.getpid()}" + (f" {child}" if child else "") + "\n"
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode(), 0)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)


def mark_stale_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The folder's previous manifest; one still `running` (its process is gone: we hold the lock) → interrupted."""
    path = out_dir / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(manifest, dict) and manifest.get("status") == "running":
        manifest.update(
            status="interrupted",
            interrupted_found=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            note="its process died without recording an end (killed, or the machine stopped)",
        )
        atomic_write_json(path, manifest)
    return manifest if isinstance(manifest, dict) else None


def _die_with_parent(parent: int) -> Any:
    """preexec_fn for the trainer: SIGTERM when the runner dies (Linux prctl PR_SET_PDEATHSIG), even by kill -9."""

    def preexec() -> None:
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(1)

    return preexec


def launch(command: list[str], env: dict[str, str], lock: RunLock) -> tuple[int, int | None]:
    """Run the trainer in its own process group, forwarding SIGINT/SIGTERM/SIGHUP to it; (exit code, signal)."""
    proc = subprocess.Popen(
        command, env=env, start_new_session=True, pass_fds=(lock.fd,), preexec_fn=_die_with_parent(os.getpid())
    )
    lock.note(proc.pid)
    received: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, forward) for signum in forwarded}
    try:
        while True:
            try:
                code = proc.wait()
                break
            except InterruptedError:
                continue
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code, received[0] if received else None


TRAINER_LOG = "trainer_log.jsonl"  # LLaMA-Factory's LogCallback: every 5 prediction steps (and each training log)


class ProgressLines(threading.Thread):
    """One printed line per entry LLaMA-Factory's LogCallback appends to OUT/trainer_log.jsonl while predicting.

    In a log file (stdout not a TTY) tqdm's redraws become thousands of lines; the runner turns tqdm off there
    (`disable_tqdm`) and prints these instead.
    """

    def __init__(self, path: Path, stage: str, every: float = 1.0):
        super().__init__(daemon=True)
        self.path, self.stage, self.every, self.offset = path, stage, every, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.drain()
        self.drain()

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)

    def drain(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
            try:
                log = json.loads(line)
                print(
                    f"[{self.stage}] {log['current_steps']}/{log['total_steps']} batches ({log['percentage']}%), "
                    f"{log.get('elapsed_time', '?')} elapsed, {log.get('remaining_time', '?')} left",
                    flush=True,
                )
            except (ValueError, KeyError, TypeError):
                continue


def log_friendly(config: dict[str, Any], stage: str, env: dict[str, str]) -> bool:
    """Where stdout is not a TTY: tqdm off (one progress line per update instead), quieter bars elsewhere.

    Returns whether the caller should print LLaMA-Factory's progress log (ProgressLines).
    """
    if sys.stdout.isatty() or stage == "export":
        return False
    config.setdefault("disable_tqdm", True)  # transformers' Trainer: PrinterCallback (one line per log) for tqdm
    env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TQDM_MININTERVAL", "30")  # any other bar (checkpoint shards, …) redraws at most twice a minute
    return stage == "predict"


def cli_command(stage: str, run_yaml: Path) -> list[str]:
    """Training runs pipeline/train_entry.py (`llamafactory-cli train` with the output layer only on answer
    positions); prediction and export run llamafactory-cli itself."""
    if stage in ("train", "qlora"):
        return [sys.executable, "-m", "pipeline.train_entry", str(run_yaml)]
    cli = Path(sys.executable).with_name("llamafactory-cli")
    return [str(cli), "export" if stage == "export" else "train", str(run_yaml)]


def run_stage(
    model: str,
    stage: str,
    task: str,
    overrides: list[str] | None = None,
    fresh: bool = False,
    dry_run: bool = False,
    split: str = "test",
    data_dir: str | Path | None = None,
) -> Path:
    """Check, lock, record and launch one stage; return its output folder. Nothing is written before the checks."""
    preset = preset_path(model, stage)
    override_dict = parse_overrides(overrides or [])
    config = resolve_config(model, stage, task, override_dict, split=split, data_dir=data_dir)
    where = f"{preset.relative_to(ROOT)} with overrides {redact(override_dict) or '{}'}"
    check_config(config, stage, where)
    check_device(config, where)
    if not dry_run:  # a dry run shows what would run, before training too
        check_adapter(config, stage)
    out_dir = Path(config["export_dir"] if stage == "export" else config["output_dir"])
    doing = {"train": "trained", "qlora": "trained", "predict": "predicted into", "export": "exported into"}[stage]
    print(f"[{stage}] {model} on {task} → {out_dir}", flush=True)
    if stage == "predict":
        budget = generation_budget(task, config["dataset_dir"]) if "max_new_tokens" not in override_dict else None
        why = (
            budget[1]
            if budget
            else (
                "your override"
                if "max_new_tokens" in override_dict
                else f"the preset (no answer lengths in a {config['dataset_dir']}/*_report.json; "
                "make data with a tokenizer writes them)"
            )
        )
        print(f"[{stage}] max_new_tokens {config.get('max_new_tokens')}: {why}", flush=True)
        if config.get("max_samples"):
            print(
                f"[{stage}] LIMIT: the first {config['max_samples']} rows of {config['eval_dataset']} only "
                "(a trial run)",
                flush=True,
            )
    if dry_run:
        print(yaml.safe_dump(redact(config), allow_unicode=True, sort_keys=False))
        return out_dir
    lock = RunLock(out_dir, doing)
    try:
        previous = mark_stale_manifest(out_dir)
        if stage in ("train", "qlora"):
            config["overwrite_output_dir"], how = prepare_train_dir(
                out_dir, fresh, previous.get("status") if previous else None
            )
            if not config["overwrite_output_dir"] and "resume_from_checkpoint" not in override_dict:
                config["resume_from_checkpoint"] = str(last_complete_checkpoint(out_dir)[0])
        elif stage == "predict":
            config["overwrite_output_dir"], how = True, "predicting"
        else:
            how = "merging"
        print(f"[{stage}] {how}", flush=True)
        return record_and_launch(stage, config, preset, override_dict, where, out_dir, lock, previous)
    finally:
        lock.release()


def record_and_launch(
    stage: str,
    config: dict[str, Any],
    preset: Path,
    overrides: dict[str, Any],
    where: str,
    out_dir: Path,
    lock: RunLock,
    previous: dict[str, Any] | None,
) -> Path:
    """Write run.yaml (secrets as ***) and the manifest, run llamafactory-cli, record how it ended."""
    run_yaml = out_dir / "run.yaml"
    command = cli_command(stage, run_yaml)
    env = {
        **os.environ,
        "DISABLE_VERSION_CHECK": os.environ.get("DISABLE_VERSION_CHECK", "0"),
        # LLaMA-Factory's launcher runs `torchrun` (and DeepSpeed its own tools) by name: the venv's, even unactivated
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    if config.get("deepspeed"):
        env.setdefault("FORCE_TORCHRUN", "1")  # DeepSpeed runs only under a launcher, even on one GPU
    progress = log_friendly(config, stage, env)
    out_dir.mkdir(parents=True, exist_ok=True)
    recorded = redact(config)
    atomic_write_text(
        run_yaml, f"# resolved from {where}\n" + yaml.safe_dump(recorded, allow_unicode=True, sort_keys=False)
    )
    manifest = build_manifest(config, command, preset, overrides)
    if previous:
        manifest["previous"] = {key: previous.get(key) for key in ("status", "started", "ended", "pid")}
    atomic_write_json(out_dir / "manifest.json", manifest)
    start = time.perf_counter()
    private = None
    if recorded != config:  # secrets: the trainer reads the real values from a file only this user can read
        private = Path(tempfile.mkdtemp(prefix="llmcomp-run-"))
        (private / "run.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    watcher = None
    if progress:
        (out_dir / TRAINER_LOG).unlink(missing_ok=True)  # a previous prediction's log
        watcher = ProgressLines(out_dir / TRAINER_LOG, stage)
        watcher.start()
    try:
        code, signum = launch(cli_command(stage, private / "run.yaml") if private else command, env, lock)
    finally:
        if watcher is not None:
            watcher.stop()
        if private:
            shutil.rmtree(private, ignore_errors=True)
    status = "done" if code == 0 else f"failed ({code})"
    if signum is not None:
        status = f"interrupted ({signal.Signals(signum).name})"
    manifest.update(
        ended=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - start, 1),
        status=status,
    )
    atomic_write_json(out_dir / "manifest.json", manifest)
    if signum is not None:
        raise RunInterrupted(
            f"{signal.Signals(signum).name}: stopped llamafactory-cli ({out_dir}); re-run to resume "
            "from the last complete checkpoint",
            signum,
        )
    if code != 0:
        raise RunError(f"llamafactory-cli exited with {code}; see the log above ({out_dir})")
    return out_dir


def predicted_rows(
    predict_dir: Path, test_json: Path, group_col: str | None = None, limit: int | None = None
) -> list[dict]:
    """generated_predictions.jsonl is in dataset order: zip it with the test records' ids (and their group).

    `limit`: the run predicted the first N records only (max_samples, LIMIT=N).
    """
    records = read_records(test_json)[:limit]
    generated = [json.loads(line) for line in (predict_dir / "generated_predictions.jsonl").open(encoding="utf-8")]
    if len(generated) != len(records):
        raise RunError(
            f"{predict_dir}/generated_predictions.jsonl has {len(generated)} rows but {test_json} has "
            f"{len(records)}: cannot join by order (max_samples= without --limit? LIMIT=N says both)"
        )
    extra = [key for key in (group_col,) if key and key in records[0]]
    # a multi-byte character cut by max_new_tokens decodes as U+FFFD at the end: keep whole characters
    return [
        {
            "id": record["id"],
            "prediction": row["predict"].strip().rstrip("\ufffd"),
            **{key: record[key] for key in extra},
        }
        for record, row in zip(records, generated, strict=True)
    ]


def join_predictions(
    predict_dir: Path, test_json: Path, out_csv: Path, group_col: str | None = None, limit: int | None = None
) -> int:
    """Write predicted_rows as out_csv (id,prediction[,group]); return the row count."""
    rows = predicted_rows(predict_dir, test_json, group_col, limit)
    atomic_write_csv(out_csv, rows)
    return len(rows)
