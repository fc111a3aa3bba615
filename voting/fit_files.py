"""`llmcomp ensemble fit`: OOF files in, the nested-CV comparison (report.md/.png/.json) and
submissions/TASK/ensemble.json out; `llmcomp vote --ensemble`: that file applied to the members' cv files.

An OOF file is `predictions/TASK/MODEL_oof.csv` (`id,fold,prediction,prob_<label>...`, `make cv`); its origin
record (core.origin) names the fold assignment's hash, and files of different assignments are refused together.
Its cv file, `MODEL_cv.csv` beside it, holds the test split scored by every fold model and averaged: what the fitted
ensemble is applied to. ensemble.json keeps each member's sha256: a member changed or missing since the fit is
refused by name.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.fileio import atomic_open, atomic_write_frame, atomic_write_json, atomic_write_text, formula_safe_frame
from core.origin import common_origin, copy_origin, file_sha256, read_origin
from core.paths import split_folder
from core.tasks import TaskSpec
from voting import VotingError, first_items
from voting.fit import (
    BOOTSTRAP,
    METRICS,
    Context,
    apply_method,
    bootstrap,
    default_metric,
    fit_method,
    nested_cv,
    predict,
)
from voting.predictions import Predictions, aligned_predictions, read_dataset_json, read_gold, read_predictions_csv

FOLD_COLUMN = "fold"
OOF_SUFFIX, CV_SUFFIX = "_oof", "_cv"


@dataclass
class OOF:
    """Members' OOF probabilities aligned with gold: see voting/fit.py for the arrays."""

    paths: list[Path]
    ctx: Context
    ids: np.ndarray
    P: np.ndarray
    mask: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    fold_sha256: str | None


def member_name(path: Path) -> str:
    """predictions/TASK/smollm2_oof.csv → smollm2."""
    return path.stem.removesuffix(OOF_SUFFIX)


def cv_file(path: Path) -> Path:
    return path.with_name(member_name(path) + CV_SUFFIX + ".csv")


def fold_hash(paths: Sequence[Path]) -> str | None:
    """The fold assignment every OOF file records (its origin's `folds_sha256`); different ones are refused."""
    hashes = {str(path): (read_origin(path) or {}).get("folds_sha256") for path in paths}
    if len(set(hashes.values())) > 1:
        shown = ", ".join(f"{path}: {value or 'none recorded'}" for path, value in hashes.items())
        raise VotingError(
            f"the OOF files were made on different fold assignments ({shown}): an ensemble is fitted on one "
            "assignment; make cv again for the odd ones (the same data/TASK_folds.json)"
        )
    return next(iter(hashes.values()), None)


def candidate_mask(gold_path: Path, ids: np.ndarray, groups: np.ndarray | None, task: TaskSpec) -> np.ndarray:
    """Each row's own labels: from the gold records where gold is an adapter dataset (logic's options), else from
    the row's group (judge: its dimension), else every label."""
    labels = list(task.labels or ())
    mask = np.ones((len(ids), len(labels)), dtype=bool)
    if gold_path.suffix.lower() in (".json", ".jsonl"):
        by_id = {str(r["id"]): r for r in read_dataset_json(gold_path)}
        for i, row_id in enumerate(ids):
            mask[i] = np.isin(labels, task.candidates(by_id[str(row_id)]))
    elif groups is not None:
        for i, group in enumerate(groups):
            allowed = task.rules_for(group)[0] or labels
            mask[i] = np.isin(labels, allowed)
    return mask


def read_oof(paths: Sequence[str | Path], gold_path: str | Path, task: TaskSpec, metric: str | None) -> OOF:
    """Read and check the OOF files and gold; every file must hold the same ids, folds and prob_ columns."""
    if task.labels is None:
        raise VotingError(
            f"task {task.name} has free-text answers: fitted ensembles need label probabilities "
            "(free-text OOF generations are not supported)"
        )
    files_in = [Path(p) for p in paths]
    if len(files_in) < 2:
        raise VotingError(f"an ensemble needs at least two OOF files; given {len(files_in)}")
    names = [member_name(p) for p in files_in]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise VotingError(f"files share the member name {', '.join(repeated)}: each needs its own file name")
    sha = fold_hash(files_in)
    gold = read_gold(gold_path, task)
    groups = dict(zip(gold.ids, gold.groups, strict=True)) if gold.groups is not None else None
    files: list[Predictions] = [read_predictions_csv(p, task, groups) for p in files_in]
    for f in files:
        if FOLD_COLUMN not in f.frame.columns:
            raise VotingError(f"{f.path}: no {FOLD_COLUMN} column; expected an OOF file (id,fold,prediction,prob_*)")
        if not f.prob_labels:
            raise VotingError(f"{f.path}: no prob_<label> columns; a fitted ensemble needs probabilities")
    aligned = aligned_predictions([gold, *files])
    gold, files = aligned[0], aligned[1:]
    folds = pd.to_numeric(files[0].frame[FOLD_COLUMN], errors="coerce").to_numpy()
    for f in files[1:]:
        other = pd.to_numeric(f.frame[FOLD_COLUMN], errors="coerce").to_numpy()
        differ = np.flatnonzero(other != folds)
        if len(differ):
            raise VotingError(
                f"{files[0].path} and {f.path} put rows in different folds (ids {first_items(f.ids[differ])}): "
                "OOF files of one ensemble come from one fold assignment"
            )
    if np.isnan(folds).any() or len(np.unique(folds)) < 2:
        raise VotingError(f"{files[0].path}: the {FOLD_COLUMN} column needs integers and at least two folds")
    labels = list(task.labels)
    ctx = Context(names, labels, metric or default_metric(labels))
    if ctx.metric not in METRICS:
        raise VotingError(f"--metric {ctx.metric}: expected one of {', '.join(METRICS)}")
    P = np.nan_to_num(np.stack([f.probabilities(labels) for f in files]))
    y = np.array([labels.index(label) for label in gold.labels])
    mask = candidate_mask(Path(gold_path), gold.ids, gold.groups, task)
    return OOF(files_in, ctx, gold.ids, P, mask, y, folds.astype(int), sha)


def best_method(figures: dict[str, Any], names: Sequence[str]) -> str:
    """The combiner with the highest nested-CV figure (a member wins only where no combiner beats it)."""
    methods = figures["methods"]
    combiners = [name for name in methods if name not in names]
    best = max(combiners, key=lambda name: methods[name]["metric"])
    return best if methods[best]["metric"] >= methods[figures["best_member"]]["metric"] else figures["best_member"]


def fit_ensemble(
    paths: Sequence[str | Path],
    gold_path: str | Path,
    task: TaskSpec,
    out_json: str | Path,
    report_dir: str | Path,
    metric: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare every method by nested CV, refit the best on every OOF row, write ensemble.json and the report."""
    oof = read_oof(paths, gold_path, task, metric)
    predictions = nested_cv(oof.P, oof.mask, oof.y, oof.folds, oof.ctx)
    figures = bootstrap(predictions, oof.y, oof.ctx, seed)
    chosen = best_method(figures, oof.ctx.names)
    params = fit_method(chosen, oof.P, oof.mask, oof.y, oof.ctx)
    members = []
    for path in oof.paths:
        cv = cv_file(path)
        members.append(
            {
                "name": member_name(path),
                "oof": str(path),
                "oof_sha256": file_sha256(path),
                "cv": str(cv),
                "cv_sha256": file_sha256(cv) if cv.is_file() else None,
            }
        )
    ensemble = {
        "task": task.name,
        "method": chosen,
        "params": params,
        "labels": oof.ctx.labels,
        "metric": oof.ctx.metric,
        "fold_sha256": oof.fold_sha256,
        "members": members,
        "gold": str(gold_path),
        "rows": len(oof.y),
        "folds": len(np.unique(oof.folds)),
        "nested_cv": figures["methods"][chosen],
        "best_member": figures["best_member"],
        "fitted": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    report = {**{k: ensemble[k] for k in ("task", "method", "metric", "rows", "folds", "best_member")}, **figures}
    atomic_write_json(out_json, ensemble)
    written = write_fit_report(report, Path(report_dir))
    return {
        "out": str(out_json),
        "report": [str(p) for p in written],
        "method": chosen,
        "metric": oof.ctx.metric,
        "nested_cv": figures["methods"][chosen],
        "best_member": figures["best_member"],
    }


def fit_markdown(report: dict[str, Any]) -> str:
    methods, best = report["methods"], report["method"]
    chosen = methods[best]
    negated = " (MAE negated: higher is better)" if report["metric"] == "mae" else ""
    lines = [
        f"# Fitted ensemble: {report['task']} ({report['rows']} OOF rows, {report['folds']} folds)",
        "",
        f"Best: **{best}**, {report['metric']}{negated} {chosen['metric']:.4f} "
        f"[{chosen['ci95'][0]:.4f}, {chosen['ci95'][1]:.4f}]; margin over the best member "
        f"`{report['best_member']}`: {chosen['margin']:+.4f} (paired 95% interval "
        f"[{chosen['margin_ci95'][0]:+.4f}, {chosen['margin_ci95'][1]:+.4f}]"
        + ("; it excludes 0)." if chosen["margin_ci95"][0] > 0 else "; it includes 0).")
        if best != report["best_member"]
        else f"Best: the member **{best}** alone; no combiner beat it on nested CV.",
        "",
        "Every figure is nested cross-validation: each fold's rows predicted by a fit on the other folds' rows only. "
        f"Intervals: {BOOTSTRAP} bootstrap resamples of the rows, the same resamples for every method "
        "(paired margins). Picking the best of several methods on these same rows flatters it a little.",
        "",
        f"| method | {report['metric']} | 95% interval | margin over `{report['best_member']}` | paired 95% interval |",
        "|---|---|---|---|---|",
    ]
    for name, f in methods.items():
        shown = f"`{name}`" if f["member"] else (f"**{name}**" if name == best else name)
        lines.append(
            f"| {shown} | {f['metric']:.4f} | [{f['ci95'][0]:.4f}, {f['ci95'][1]:.4f}] | {f['margin']:+.4f} | "
            f"[{f['margin_ci95'][0]:+.4f}, {f['margin_ci95'][1]:+.4f}] |"
        )
    lines += ["", "![nested-CV figures with intervals](report.png)", ""]
    return "\n".join(lines)


def plot_fit(report: dict[str, Any], path: Path) -> None:
    """One bar per method with its 95% interval; members grey, the chosen method dark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = report["methods"]
    names = list(methods)
    values = np.array([methods[n]["metric"] for n in names])
    low = values - np.array([methods[n]["ci95"][0] for n in names])
    high = np.array([methods[n]["ci95"][1] for n in names]) - values
    colors = ["#999999" if methods[n]["member"] else ("#1f4e79" if n == report["method"] else "#6fa8dc") for n in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 4.5))
    ax.bar(range(len(names)), values, yerr=[low, high], color=colors, capsize=4)
    ax.set_xticks(range(len(names)), labels=names, rotation=30, ha="right")
    ax.set_ylabel(f"{report['metric']} (nested CV)")
    ax.set_title(f"{report['task']}: members (grey) and ensembles, 95% bootstrap intervals")
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def write_fit_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    paths = [out_dir / "report.json", out_dir / "report.png", out_dir / "report.md"]
    atomic_write_json(paths[0], report)
    plot_fit(report, paths[1])
    atomic_write_text(paths[2], fit_markdown(report))
    return paths


def split_cv(member: dict[str, Any], split: str) -> Path:
    """A member's cv file of `split`: the test split's as fitted (ensemble.json), another split's in its folder
    beside the OOF file (`make cv SPLIT=dev` → predictions/TASK/dev/MODEL_cv.csv)."""
    if split == "test":
        return Path(member["cv"])
    return Path(member["oof"]).parent / split_folder(split) / f"{member['name']}{CV_SUFFIX}.csv"


def read_ensemble(path: str | Path, task: TaskSpec, split: str = "test") -> dict[str, Any]:
    """ensemble.json, its members checked: each OOF file and cv file present and unchanged since the fit (another
    split's cv file: present and made by the same fold models)."""
    try:
        ensemble = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VotingError(f"{path}: no such ensemble; make fit-ensemble TASK={task.name} writes it") from None
    except ValueError as err:
        raise VotingError(f"{path}: not an ensemble file ({err})") from None
    if ensemble.get("task") != task.name:
        raise VotingError(f"{path} was fitted for task {ensemble.get('task')!r}, not {task.name}")
    for member in ensemble["members"]:
        member["cv"] = str(split_cv(member, split))
        for kind in ("oof", "cv"):
            file, recorded = (
                Path(member[kind]),
                member.get(f"{kind}_sha256") if kind == "oof" or split == "test" else None,
            )
            if not file.is_file():
                raise VotingError(
                    f"member {member['name']}: {file} is missing (the ensemble {path} was fitted with its OOF "
                    f"file); make cv MODEL={member['name']} TASK=... SPLIT={split} writes it"
                    if kind == "cv" and split != "test"
                    else f"member {member['name']}: {file} is missing (the ensemble {path} was fitted with it); "
                    "make cv again or fit the ensemble again"
                )
            if recorded is not None and file_sha256(file) != recorded:
                raise VotingError(
                    f"member {member['name']}: {file} changed since the ensemble {path} was fitted "
                    f"(sha256 {recorded[:12]}… then); fit it again (make fit-ensemble TASK={task.name})"
                )
        folds = (read_origin(member["cv"]) or {}).get("folds_sha256")
        if ensemble.get("fold_sha256") and folds and folds != ensemble["fold_sha256"]:
            raise VotingError(f"member {member['name']}: {member['cv']} comes from another fold assignment")
    return ensemble


def vote_ensemble(path: str | Path, task: TaskSpec, out: str | Path, split: str = "test") -> dict[str, Any]:
    """Apply ensemble.json to its members' cv files (the test split's, or `split`'s) → the voted file (id,
    prediction, prob_*)."""
    ensemble = read_ensemble(path, task, split)
    names = [m["name"] for m in ensemble["members"]]
    cvs = [m["cv"] for m in ensemble["members"]]
    origin = common_origin(cvs)
    files = [read_predictions_csv(cvs[0], task)]
    groups = dict(zip(files[0].ids, files[0].groups, strict=True)) if files[0].groups is not None else None
    files += [read_predictions_csv(cv, task, groups, same_ids=files[0].ids) for cv in cvs[1:]]
    files = aligned_predictions(files)
    labels = list(ensemble["labels"])
    ctx = Context(names, labels, ensemble["metric"])
    P = np.nan_to_num(np.stack([f.probabilities(labels) for f in files]))
    # each row's own labels: those some member gave probability (label scoring writes 0 for the others)
    mask = (P > 0).any(axis=0)
    if origin and origin.get("data_file") and Path(origin["data_file"]).is_file():
        mask = candidate_mask(Path(origin["data_file"]), files[0].ids, files[0].groups, task)
    probs = apply_method(ensemble["method"], ensemble["params"], P, mask, ctx)
    codes = predict(probs, mask)
    out_frame = pd.DataFrame({"id": files[0].ids, "prediction": np.asarray(labels, dtype=object)[codes]})
    for k, label in enumerate(labels):
        out_frame[f"prob_{label}"] = probs[:, k].round(6)
    for column in files[0].extra_columns:
        if column not in out_frame.columns and column != FOLD_COLUMN:
            out_frame[column] = files[0].frame[column].to_numpy()
    atomic_write_frame(out, formula_safe_frame(out_frame))  # formula-safe, as every voted file
    if origin is not None:
        copy_origin(origin, out, f"fitted ensemble {ensemble['method']} ({path}) of {', '.join(names)}")
    return {"out": str(out), "n": len(out_frame), "method": ensemble["method"], "members": names}
