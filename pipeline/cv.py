"""k-fold cross-validation of one model: a LoRA per fold, its held-out fold label-scored, the test split scored by
every fold model (`llmcomp cv`, `make cv MODEL=m TASK=t FOLDS=5 [FOLD=k]`).

    python -m pipeline.cv --model M --task T --folds 5 [--fold K] [--seed 0] [--fresh] [key=value ...]

    DATA/TASK_folds.json                 the assignment (pipeline/folds.py), made once per dataset, with its hash
    DATA/TASK_cv-K_{train,heldout}.json  fold K's datasets, registered in dataset_info.json like the adapters' own
    saves/TASK/MODEL/cv/fold-K/          a normal training run (run.yaml, manifest, lock, resume from checkpoints),
                                         heldout.csv and test.csv (its label scores) beside it
    predictions/TASK/MODEL_oof.csv       id,fold,prediction,prob_<label>... of every train row, scored by the model
                                         that never saw it; its origin records the fold hash (folds_sha256)
    predictions/TASK/MODEL_cv.csv        the test split, every fold model's probabilities averaged

`--fold K` runs one fold (several machines can each take folds over a shared filesystem); a finished fold is
skipped, an interrupted one resumes from its last complete checkpoint; the OOF and cv files are written once every
fold is finished. MODEL=tfidf: the TF-IDF baseline (pipeline/baseline.py) fitted per fold, in seconds;
MODEL=majority: the other folds' label frequencies (the prior, logic's majority letter). `--base` (BASE=1): the
model zero-shot, no training (MODEL-base_oof.csv: every fold's held-out rows scored by the base model, the split
scored once), so that untrained models can join a fitted ensemble.
Free-text tasks (QA, keywords) are not cross-validated here: their OOF generations are future work.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.fileio import atomic_files, atomic_write_csv, atomic_write_json
from core.origin import file_sha256, read_origin, record_origin
from core.paths import predictions_csv, stage_dir
from core.records import read_records
from pipeline.baseline import majority_predictions, tfidf_predictions
from pipeline.errors import RunError
from pipeline.folds import assign_folds, check_foldable, fold_summary, folds_sha256
from pipeline.run import Run, stage_main, stage_parser

TFIDF, MAJORITY = "tfidf", "majority"
# a member fitted per fold in-process: (what it is, predict(train, rows, task=) → [{id, prediction, prob_*}])
FITTED_MEMBERS: dict[str, tuple[str, Callable[..., list[dict]]]] = {
    TFIDF: ("TF-IDF baseline", tfidf_predictions),
    MAJORITY: ("label frequencies", majority_predictions),
}
BASE_SUFFIX = "-base"


def folds_file(run: Run) -> Path:
    return run.data_dir / f"{run.task}_folds.json"


def member(run: Run, base: bool) -> str:
    """The member's name in predictions/ (MODEL, or MODEL-base for the zero-shot model)."""
    return run.model + (BASE_SUFFIX if base else "")


def fold_dir(run: Run, fold: int, base: bool = False) -> Path:
    """saves/TASK/MODEL/cv/fold-K (cv-base/ for the zero-shot model)."""
    return stage_dir(run.task, run.model, "train").parent / ("cv-base" if base else "cv") / f"fold-{fold}"


def fold_dataset(run: Run, fold: int, part: str) -> str:
    return f"{run.task}_cv-{fold}_{part}"


def read_or_assign(run: Run, folds: int, seed: int) -> tuple[list[dict], dict[str, Any]]:
    """(train records, the folds file's content): the saved assignment, checked against the data and FOLDS=;
    else a new one (checked: enough rows, groups and rows per label), saved."""
    train_file = run.data_file("train")
    records = read_records(train_file)
    path, data_sha = folds_file(run), file_sha256(train_file)
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("data_sha256") != data_sha:
            raise RunError(
                f"{path} was assigned on another {train_file} (its sha256 changed): remove {path} to assign folds "
                "again (OOF files made on the old folds will not join an ensemble with new ones)"
            )
        if (saved.get("folds"), saved.get("seed")) != (folds, seed):
            raise RunError(
                f"{path} holds {saved.get('folds')} folds (seed {saved.get('seed')}), not FOLDS={folds} (seed {seed}): "
                f"give FOLDS={saved.get('folds')}, or remove {path} to assign again"
            )
        return records, saved
    spec = run.spec
    check_foldable(records, folds, spec, str(train_file))
    assignment = assign_folds(records, folds, seed, spec)
    saved = {
        "dataset": f"{run.task}_train",
        "data_file": str(train_file),
        "data_sha256": data_sha,
        "folds": folds,
        "seed": seed,
        "stratified_by": f"{spec.group_col} × label" if spec and spec.group_col else "label",
        "grouped_by": "the task's fold groups (fold_group_of)" if spec and spec.fold_group_of else "none (rows)",
        "sha256": folds_sha256(assignment, folds),
        "per_fold": fold_summary(records, assignment, spec),
        "assignment": assignment,
    }
    atomic_write_json(path, saved)
    print(f"[cv] {folds} folds of {len(records)} rows (seed {seed}) → {path}", flush=True)
    return records, saved


def write_fold_datasets(run: Run, records: list[dict], assignment: dict[str, int], fold: int) -> None:
    """DATA/TASK_cv-K_train.json (the other folds) and _heldout.json, registered under the registry's lock."""
    from adapters.writing import register, registry_entry, write_records

    parts = {
        fold_dataset(run, fold, "train"): [r for r in records if assignment[str(r["id"])] != fold],
        fold_dataset(run, fold, "heldout"): [r for r in records if assignment[str(r["id"])] == fold],
    }
    task = run.spec.name if run.spec is not None else run.task
    with atomic_files() as batch:
        for name, rows in parts.items():
            write_records(run.data_dir / f"{name}.json", rows, opener=batch.open)
        register(
            batch, run.data_dir, {name: registry_entry(f"{name}.json", rows, task) for name, rows in parts.items()}
        )


def scored_name(split: str) -> str:
    """The fold folder's file of the split scored beside the held-out rows: test.csv, or SPLIT.csv (SPLIT=dev)."""
    return f"{split}.csv"


def fold_finished(folder: Path, sha: str, split: str = "test") -> bool:
    return all(
        (folder / name).is_file() and (read_origin(folder / name) or {}).get("folds_sha256") == sha
        for name in ("heldout.csv", scored_name(split))
    )


def check_fold_dir(folder: Path, fold: int, sha: str, fresh: bool) -> None:
    """A fold folder belongs to one assignment: refuse one trained on another (FRESH=1 moves it aside)."""
    marker = folder / "fold.json"
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("folds_sha256") != sha and not fresh:
        raise RunError(f"{folder} was trained on another fold assignment; FRESH=1 moves it aside and trains again")


def score_namespace(
    run: Run, split: str, folder: Path, out: Path, batch_size: int, base: bool = False
) -> argparse.Namespace:
    """label_scoring.run's arguments: the fold's adapter (none with `base`) on `split`, the scoring report inside
    the fold folder."""
    return argparse.Namespace(
        model=run.model,
        task=run.task,
        data_dir=str(run.data_dir),
        split=split,
        limit=None,
        overrides=[
            *run.overrides,
            f"adapter_name_or_path={'' if base else folder}",
            f"output_dir={folder / 'predict'}",
        ],
        labels=None,
        calibrate=False,
        calibrate_on=None,
        calibration_rows=0,
        seed=0,
        out=str(out),
        batch_size=batch_size,
    )


def score_into(run: Run, split: str, folder: Path, name: str, sha: str, batch_size: int, base: bool = False) -> None:
    """Label-score `split` with the fold's adapter (the base model with `base`) into folder/name; its origin
    records the fold assignment."""
    from pipeline import label_scoring

    label_scoring.run(score_namespace(run, split, folder, folder / name, batch_size, base))
    origin = read_origin(folder / name) or {}
    atomic_write_json(folder / name.replace(".csv", ".origin.json"), {**origin, "folds_sha256": sha})


def run_fold(
    run: Run, records: list[dict], saved: dict[str, Any], fold: int, fresh: bool, batch_size: int, base: bool = False
) -> None:
    """Train fold K on the other folds (resumed where interrupted), score its held-out rows and the test split."""
    sha, folder = saved["sha256"], fold_dir(run, fold, base)
    if not fresh and fold_finished(folder, sha, run.split):
        print(f"[cv] fold {fold}: finished ({folder}), skipped", flush=True)
        return
    check_fold_dir(folder, fold, sha, fresh)
    write_fold_datasets(run, records, saved["assignment"], fold)
    heldout_split = f"cv-{fold}_heldout"
    if run.model in FITTED_MEMBERS:
        fitted_fold(run, fold, folder, sha)
        return
    if base:
        base_fold(run, fold, folder, sha, batch_size)
        return
    from pipeline.runs import run_stage

    manifest = folder / "manifest.json"
    trained = (folder / "adapter_config.json").is_file() and manifest.is_file()
    if (
        not trained
        or fresh
        or not json.loads(manifest.read_text(encoding="utf-8")).get("status", "").startswith("done")
    ):
        fold_run = run.with_overrides(f"dataset={fold_dataset(run, fold, 'train')}", f"output_dir={folder}")
        print(f"[cv] fold {fold}: training on the other folds → {folder}", flush=True)
        run_stage(fold_run, "train", fresh=fresh)
        atomic_write_json(folder / "fold.json", {"fold": fold, "folds_sha256": sha})
    for split, name in ((heldout_split, "heldout.csv"), (run.split, scored_name(run.split))):
        score_into(run, split, folder, name, sha, batch_size)
    print(f"[cv] fold {fold}: scored its held-out rows and the {run.split} split", flush=True)


def fitted_fold(run: Run, fold: int, folder: Path, sha: str) -> None:
    """The TF-IDF baseline (or the label frequencies) fitted on the other folds: its held-out rows and the split."""
    what, predict = FITTED_MEMBERS[run.model]
    train = read_records(run.data_file(f"cv-{fold}_train"))
    for split, name in ((f"cv-{fold}_heldout", "heldout.csv"), (run.split, scored_name(run.split))):
        data_file = run.data_file(split)
        rows = predict(train, read_records(data_file), task=run.spec)
        atomic_write_csv(folder / name, rows)
        record_origin(folder / name, data_file, split, None, f"{what}, fold {fold}", len(rows), folds_sha256=sha)
    atomic_write_json(folder / "fold.json", {"fold": fold, "folds_sha256": sha})
    print(f"[cv] fold {fold}: {what} fitted on the other folds → {folder}", flush=True)


def base_fold(run: Run, fold: int, folder: Path, sha: str, batch_size: int) -> None:
    """The base model, untrained: fold K's held-out rows label-scored; the split scored once (fold 0) and copied,
    since every fold's "model" is the same."""
    folder.mkdir(parents=True, exist_ok=True)
    name = scored_name(run.split)
    first = fold_dir(run, 0, base=True) / name
    todo = [(f"cv-{fold}_heldout", "heldout.csv")]
    if fold == 0 or (read_origin(first) or {}).get("folds_sha256") != sha:
        todo.append((run.split, name))
    else:
        shutil.copyfile(first, folder / name)
        atomic_write_json(folder / name.replace(".csv", ".origin.json"), read_origin(first) or {})
    for split, out in todo:
        score_into(run, split, folder, out, sha, batch_size, base=True)
    atomic_write_json(folder / "fold.json", {"fold": fold, "folds_sha256": sha, "base": True})
    print(f"[cv] fold {fold}: {run.model} zero-shot (no training) scored its held-out rows → {folder}", flush=True)


def prob_columns(frames: list[pd.DataFrame]) -> list[str]:
    labels = {c[len("prob_") :] for f in frames for c in f.columns if c.startswith("prob_")}
    return [f"prob_{label}" for label in sorted(labels, key=lambda x: (len(x), x))]  # as label scoring orders them


def write_oof_and_cv(run: Run, records: list[dict], saved: dict[str, Any], base: bool = False) -> tuple[Path, Path]:
    """MODEL_oof.csv (every train row, from its held-out fold, in train order) and MODEL_cv.csv (the test split,
    the fold models' probabilities averaged, the prediction their most probable label)."""
    folds, sha = saved["folds"], saved["sha256"]
    held = [pd.read_csv(fold_dir(run, k, base) / "heldout.csv", dtype=str, keep_default_na=False) for k in range(folds)]
    tests = [
        pd.read_csv(fold_dir(run, k, base) / scored_name(run.split), dtype=str, keep_default_na=False)
        for k in range(folds)
    ]
    columns = prob_columns(held + tests)
    oof = pd.concat([f.assign(fold=str(k)) for k, f in enumerate(held)], ignore_index=True)
    oof = oof.set_index("id").reindex([str(r["id"]) for r in records]).reset_index()
    extras = [c for c in oof.columns if c not in ("id", "fold", "prediction", *columns)]
    oof = oof[["id", "fold", "prediction", *columns, *extras]]
    oof[columns] = oof[columns].replace("", "0").fillna("0")
    probs = np.mean(
        [f.reindex(columns=columns).replace("", "0").fillna("0").astype(float).to_numpy() for f in tests], 0
    )
    cv = tests[0][["id"]].copy()
    labels = np.array([c[len("prob_") :] for c in columns], dtype=object)
    cv["prediction"] = labels[np.argmax(probs, axis=1)]
    for k, column in enumerate(columns):
        cv[column] = probs[:, k].round(6)
    for column in tests[0].columns:
        if column not in cv.columns and not column.startswith("prob_") and column != "prediction":
            cv[column] = tests[0][column]
    oof_path = predictions_csv(run.task, member(run, base) + "_oof")
    cv_path = predictions_csv(run.task, member(run, base) + "_cv", split=run.split)
    atomic_write_csv(oof_path, oof.to_dict("records"))
    made_by = f"{folds}-fold cross-validation of {member(run, base)}"
    record_origin(oof_path, run.data_file("train"), "train", None, made_by, len(oof), folds_sha256=sha, folds=folds)
    atomic_write_csv(cv_path, cv.to_dict("records"))
    run.record_origin(cv_path, run.data_file(), len(cv), made_by + ", fold models averaged", folds_sha256=sha)
    return oof_path, cv_path


def cross_validate(
    run: Run,
    folds: int,
    fold: int | None,
    seed: int = 0,
    fresh: bool = False,
    batch_size: int = 16,
    base: bool = False,
) -> int:
    """The stage: folds assigned (or read), the folds asked for run, the OOF and cv files once all are finished."""
    if run.spec is not None and run.spec.free_text:
        raise RunError(
            f"task {run.spec.name} ({run.task}) has free-text answers: cross-validation here label-scores held-out "
            "rows; OOF generations for free text are not supported yet"
        )
    if base and run.model in FITTED_MEMBERS:
        raise RunError(f"--base (BASE=1) is a language model zero-shot; {run.model} is fitted on the other folds")
    if fold is not None and not 0 <= fold < folds:
        raise RunError(f"FOLD={fold}: expected a fold from 0 to {folds - 1} (FOLDS={folds})")
    records, saved = read_or_assign(run, folds, seed)
    for k in range(folds) if fold is None else (fold,):
        run_fold(run, records, saved, k, fresh, batch_size, base)
    waiting = [k for k in range(folds) if not fold_finished(fold_dir(run, k, base), saved["sha256"], run.split)]
    if waiting:
        print(f"[cv] folds {', '.join(map(str, waiting))} not finished yet: the OOF file waits for them", flush=True)
        return 0
    oof, cv = write_oof_and_cv(run, records, saved, base)
    print(f"[cv] {folds} folds finished → {oof} (out-of-fold) and {cv} ({run.split}, fold models averaged)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("python -m pipeline.cv", __doc__, limit=False)
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument("--fold", type=int, help="run this fold only (0-based): one machine's share")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    parser.add_argument("--fresh", action="store_true", help="train the asked folds again (old runs moved aside)")
    parser.add_argument("--batch-size", type=int, default=16, help="label scoring batch size")
    parser.add_argument("--base", action="store_true", help="the model zero-shot: no training (MODEL-base_oof.csv)")
    args = parser.parse_intermixed_args(argv)
    return stage_main(
        lambda: cross_validate(
            Run.from_args(args), args.folds, args.fold, args.seed, args.fresh, args.batch_size, args.base
        )
    )


if __name__ == "__main__":
    sys.exit(main())
