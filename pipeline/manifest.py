"""What a run leaves beside its outputs: the manifest (command, preset, data hashes, versions, how it ended) and
the redaction that keeps secrets (`hf_hub_token=...`) out of every file and message as `***`."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from core import InputError
from core.fileio import atomic_write_json
from core.origin import file_sha256
from core.paths import DATA_DIR
from core.records import dataset_file
from pipeline.presets import ROOT

PACKAGES = ("llamafactory", "transformers", "peft", "trl", "datasets", "accelerate", "torch")
# a key that names a credential: hf_hub_token, ms_hub_token, om_hub_token, api_key, swanlab_api_key, *_secret,
# *password*; whole words only, so max_new_tokens and use_fast_tokenizer are not secrets
SECRET_KEY = re.compile(r"(^|_)(token|secret|password|passwd|api_?key|access_key)($|_)", re.IGNORECASE)


REDACTED = "***"


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


def redact_text(text: str, config: dict[str, Any]) -> str:
    for key, value in config.items():
        if is_secret(key) and isinstance(value, str) and value:
            text = text.replace(value, REDACTED)
    return text


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


def build_manifest(
    config: dict[str, Any],
    command: list[str],
    preset: Path,
    overrides: dict[str, Any],
    checkpoint: dict[str, Any] | None = None,
) -> dict:
    """`checkpoint`: the adapter a predict or export read where CHECKPOINT= chose one (best, final, a step)."""
    return {
        "command": command,
        "preset": str(preset.relative_to(ROOT)),
        "overrides": redact(overrides),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "datasets": dataset_hashes(config),
        "seed": config.get("seed"),
        "checkpoint": checkpoint,
        "device": "cuda" if config.get("bf16") else "cpu-or-fp32",
        "pid": os.getpid(),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "ended": None,
        "status": "running",
    }


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
