"""The CoLA/QQP exam's fixed layout, exported from the project's own files (`make exam-layout TASK=cola OUT=dir`).

    OUT/pre_data/CoLA_train.json, CoLA_dev.json   DATA/TASK_{train,dev}.json as the adapter wrote them
    OUT/saved_model/                               saves/TASK/MODEL/merged (make export) if present, else the LoRA
                                                   adapter saves/TASK/MODEL/lora (its final files, no checkpoints)
    OUT/result_CoLA.txt                            one label per line for the first 150 dev rows (the task's writer)

The dataset's exam name (CoLA, QQP) is the task's submission file name (`result_CoLA.txt`). The predictions are
`--pred`, else the first of submissions/TASK/dev/voted.csv, predictions/TASK/dev/MODEL.csv,
predictions/TASK/dev/MODEL_score.csv that exists; they must cover the dev split (make predict SPLIT=dev). Prints one JSON line with the exam's score
(accuracy × 70) where the dev labels are known, as `llmcomp submit` does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from core import InputError
from core.fileio import atomic_write_text
from core.paths import predictions_csv, stage_dir, submissions_dir
from core.records import dataset_file
from core.tasks import find_task
from voting import VotingError
from voting.submit import write_submission

EXAM_ROWS = 150  # the exam grades result_{dataset}.txt over the first 150 dev rows


def exam_name(submission_name: str | None) -> str:
    """`result_CoLA.txt` → `CoLA`; None for tasks the exam does not grade."""
    stem = Path(submission_name or "").stem
    if not stem.startswith("result_"):
        raise VotingError(
            f"the exam layout is for CoLA and QQP (result_<dataset>.txt); this task writes "
            f"{submission_name or 'no file'}"
        )
    return stem.removeprefix("result_")


def default_predictions(task: str, model: str) -> Path:
    candidates = [  # the dev split's own folders (core.paths.split_folder): the exam grades dev rows
        submissions_dir(task, "dev") / "voted.csv",
        predictions_csv(task, model, split="dev"),
        predictions_csv(task, model, "score", split="dev"),
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise VotingError(
        f"no predictions of {task}: none of {', '.join(map(str, candidates))} exists; predict the dev "
        f"split first (make predict MODEL={model} TASK={task} SPLIT=dev [MODE=score]) or give PRED="
    )


def copy_model(task: str, model: str, out: Path) -> str:
    """OUT/saved_model ← the merged model, else the adapter's final files; replaced whole, never half-written."""
    merged, lora = stage_dir(task, model, "export"), stage_dir(task, model, "train")
    if merged.is_dir() and any(merged.glob("*.safetensors")):
        source, kind = merged, "merged model"
    elif (lora / "adapter_config.json").is_file():
        source, kind = lora, "LoRA adapter"
    else:
        raise VotingError(
            f"no trained model of {task}: neither {merged} (make export) nor {lora}/adapter_config.json "
            f"(make train MODEL={model} TASK={task})"
        )
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saved_model-", dir=out))
    try:
        for item in source.iterdir():
            if item.is_file():  # checkpoint-* folders and backups stay behind
                shutil.copy2(item, staging / item.name)
        target = out / "saved_model"
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return f"{kind} {source}"


def export_layout(
    task_name: str,
    model: str,
    out: str | Path,
    data_dir: str | Path = "data",
    pred: str | Path | None = None,
    unparsed: str | None = None,
    rows: int = EXAM_ROWS,
) -> dict[str, Any]:
    out = Path(out)
    task = find_task(task_name, data_dir)
    name = exam_name(task.submission_name)
    files = {split: dataset_file(f"{task_name}_{split}", data_dir)[0] for split in ("train", "dev")}
    for split, path in files.items():
        atomic_write_text(out / "pre_data" / f"{name}_{split}.json", path.read_text(encoding="utf-8"))
    model_from = copy_model(task_name, model, out)
    pred_path = Path(pred) if pred else default_predictions(task_name, model)
    summary = write_submission(task, pred_path, files["dev"], out, unparsed, limit=rows)
    return {
        "out": str(out),
        "pre_data": [f"pre_data/{name}_{split}.json" for split in files],
        "saved_model": model_from,
        "predictions": str(pred_path),
        **summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voting.exam", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", required=True, help="cola or qqp, or a dataset name whose task the adapter recorded")
    parser.add_argument("--model", default="smollm2", help="whose saves/TASK/MODEL go to saved_model/")
    parser.add_argument("--out", required=True, help="the exam's folder")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--pred", help="the dev predictions CSV (default: voted, else generated, else label scoring)")
    parser.add_argument("--unparsed", metavar="LABEL", help="label written for unparsed predictions")
    parser.add_argument("--rows", type=int, default=EXAM_ROWS, help=f"dev rows graded ({EXAM_ROWS})")
    args = parser.parse_args(argv)
    try:
        summary = export_layout(args.task, args.model, args.out, args.data_dir, args.pred, args.unparsed, args.rows)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, ensure_ascii=False))
    if summary.get("seed_score") is not None:
        print(
            f"exam score: accuracy {summary['accuracy']:.4f} × 70 = {summary['seed_score']:.2f} "
            f"({summary['rows']} dev rows)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
