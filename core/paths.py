"""Where every stage's files live, spelled once: data/ → saves/ → predictions/ → submissions/ (relative to the cwd).

    saves/TASK/MODEL/lora       train (LoRA SFT)         saves/TASK/MODEL/qlora    qlora (4-bit QLoRA SFT)
    saves/TASK/MODEL/predict    batch generation        saves/TASK/MODEL/merged  export
    saves/TASK/MODEL/score      label scoring report    saves/TASK/MODEL/serve   the API server's run.yaml
    saves/TASK/MODEL/sweep      a sweep: study.db, trial-N/ (each a training run), best.yaml
    predictions/TASK/MODEL.csv  generated answers       predictions/TASK/MODEL_score.csv   label scoring
    predictions/TASK/MODEL_samples.csv  sampled answers (self-consistency)
    predictions/TASK/dev/MODEL.csv, predictions/TASK/test-limit3/MODEL.csv   another split, a trial (LIMIT=3)
    (each beside its MODEL.origin.json: the dataset, split, limit and data hash it was made from; core.origin)

TASK and MODEL become folder names: each must be a plain name (letters, digits, `_`, `.`, `-`; no `/`, no `..`),
so no stage writes outside these folders.
"""

from __future__ import annotations

import re
from pathlib import Path

from core import InputError

DATA_DIR = Path("data")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "factory_configs"  # the model presets (one folder per model)
STAGE_DIRS = {
    "train": "lora",
    "qlora": "qlora",
    "predict": "predict",
    "export": "merged",
    "score": "score",
    "serve": "serve",
    "sweep": "sweep",
}
# predictions/TASK/MODEL<suffix>.csv per kind of prediction
PREDICTION_SUFFIXES = {"generate": "", "score": "_score", "samples": "_samples"}
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_MAX = 100  # NAME_cls_train.json and its temp file's name must stay under the 255-byte limit


def check_plain_name(value: str, what: str) -> str:
    """`value` if it is a plain name that can be a file or folder name; else InputError naming `what` (--task)."""
    if not PLAIN_NAME.match(value or "") or ".." in value:
        raise InputError(
            f"{what} {value!r}: expected a plain name (letters, digits, '_', '.' or '-', starting with "
            "a letter or digit); it becomes a file or folder name"
        )
    if len(value) > NAME_MAX:
        raise InputError(
            f"{what} {value[:20]}… is {len(value)} characters; expected at most {NAME_MAX} (it becomes "
            "a file or folder name)"
        )
    return value


def stage_dir(task: str, model: str, stage: str) -> Path:
    """saves/TASK/MODEL/<the stage's folder>."""
    return Path("saves") / check_plain_name(task, "--task") / check_plain_name(model, "--model") / STAGE_DIRS[stage]


def split_folder(split: str = "test", limit: int | None = None) -> str:
    """'' for every row of the test split (predictions/TASK/ as always); else the split and trial's own folder
    name (`dev`, `test-limit3`): a dev predict or a trial never replaces the test split's files."""
    if split == "test" and limit is None:
        return ""
    return check_plain_name(split, "--split") + (f"-limit{limit}" if limit is not None else "")


def predictions_dir(task: str, split: str = "test", limit: int | None = None) -> Path:
    """predictions/TASK/ for the test split, predictions/TASK/SPLIT[-limitN]/ for another split or a trial."""
    return Path("predictions") / check_plain_name(task, "--task") / split_folder(split, limit)


def predictions_csv(
    task: str, model: str, kind: str = "generate", split: str = "test", limit: int | None = None
) -> Path:
    """MODEL.csv (generation), MODEL_score.csv (label scoring) or MODEL_samples.csv in predictions_dir."""
    check_plain_name(model, "--model")
    return predictions_dir(task, split, limit) / f"{model}{PREDICTION_SUFFIXES[kind]}.csv"


def submissions_dir(task: str, split: str = "test", limit: int | None = None) -> Path:
    return Path("submissions") / check_plain_name(task, "--task") / split_folder(split, limit)


def preset_cutoff_len(model: str) -> int | None:
    """cutoff_len of factory_configs/MODEL/lora_sft.yaml, the length MODEL trains on; None without such a preset."""
    import yaml

    path = CONFIG_DIR / model / "lora_sft.yaml"
    if not PLAIN_NAME.match(model or "") or not path.is_file():
        return None
    value = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("cutoff_len")
    return value if isinstance(value, int) and not isinstance(value, bool) else None
