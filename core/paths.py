"""Where every stage's files live, spelled once: data/ → saves/ → predictions/ → submissions/ (relative to the cwd).

    saves/TASK/MODEL/lora       train (LoRA or QLoRA SFT)
    saves/TASK/MODEL/predict    batch generation        saves/TASK/MODEL/merged  export
    saves/TASK/MODEL/score      label scoring report    saves/TASK/MODEL/serve   the API server's run.yaml
    predictions/TASK/MODEL.csv  generated answers       predictions/TASK/MODEL_score.csv   label scoring
    predictions/TASK/MODEL_samples.csv  sampled answers (self-consistency)
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path("data")
STAGE_DIRS = {"train": "lora", "qlora": "lora", "predict": "predict", "export": "merged", "score": "score",
              "serve": "serve"}  # fmt: skip
# predictions/TASK/MODEL<suffix>.csv per kind of prediction
PREDICTION_SUFFIXES = {"generate": "", "score": "_score", "samples": "_samples"}


def stage_dir(task: str, model: str, stage: str) -> Path:
    """saves/TASK/MODEL/<the stage's folder>."""
    return Path("saves") / task / model / STAGE_DIRS[stage]


def predictions_csv(task: str, model: str, kind: str = "generate") -> Path:
    """predictions/TASK/MODEL.csv (generation), MODEL_score.csv (label scoring) or MODEL_samples.csv."""
    return Path("predictions") / task / f"{model}{PREDICTION_SUFFIXES[kind]}.csv"


def submissions_dir(task: str) -> Path:
    return Path("submissions") / task
