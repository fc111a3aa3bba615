"""A side-by-side report: each model and the ensemble against gold, pairwise agreement, and how often the
tie-breaker decided. Written to a folder as report.md, report.png and report.json (all atomically).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.fileio import atomic_open, atomic_write_csv, atomic_write_json, atomic_write_text
from core.metrics import free_text_metrics, is_closed_set, label_metrics, metrics_by_group, plot_confusion, qa_metrics
from core.tasks import TaskSpec
from voting.ensemble import VoteOptions, vote_files
from voting.predictions import Predictions, aligned_predictions, read_gold, read_predictions_csv, report_unparsed
from voting.rules import DECIDED_BY, TIE_BREAKER, TIE_BREAKER_ONLY, VoteResult

ENSEMBLE = "ensemble"


def agreement_matrix(columns: Sequence[Sequence[str | None]]) -> np.ndarray:
    """Fraction of rows on which two label columns agree (an unparsed label agrees with nothing)."""
    arrays = [np.asarray(column, dtype=object) for column in columns]
    size = len(arrays)
    matrix = np.ones((size, size))
    for i in range(size):
        for j in range(i + 1, size):
            same = (arrays[i] == arrays[j]) & np.array([x is not None for x in arrays[i]], dtype=bool)
            matrix[i, j] = matrix[j, i] = float(same.mean()) if len(same) else 0.0
    return matrix


def ensemble_report(
    files: Sequence[Predictions],
    gold: Predictions,
    voted: Sequence[str | None],
    result: VoteResult,
    tie_breaker: str,
    text: str | None,
    label_order: Sequence[str] | None = None,
    numeric: bool | None = None,
) -> dict:
    """Scores of every model and of the ensemble, agreement, the tie-breaker's share; files aligned with gold.

    `text` names the free-text measures (core.metrics.free_text_metrics: text, keywords, qa); None: label metrics.
    """
    gold_labels = list(gold.labels)

    def scored(labels) -> dict:
        labels = list(labels)
        if text:
            return free_text_metrics(gold_labels, labels, text)
        return label_metrics(gold_labels, labels, label_order, numeric)

    names = [f.name for f in files] + [ENSEMBLE]
    columns = [list(f.labels) for f in files] + [list(voted)]
    scores = {name: scored(column) for name, column in zip(names, columns, strict=True)}
    decided = np.isin(result.decided_by, (TIE_BREAKER, TIE_BREAKER_ONLY))
    correct = np.asarray(voted, dtype=object) == np.asarray(gold_labels, dtype=object)
    report = {
        "gold": str(gold.path),
        "n": len(gold_labels),
        "tie_breaker": tie_breaker,
        "scores": scores,
        "agreement": {"models": names, "matrix": agreement_matrix(columns).round(4).tolist()},
        "decided_by": result.decided_by_counts(),
        "tie_breaker_decided": {
            "rows": int(decided.sum()),
            "fraction": float(decided.mean()),
            "ties": int((result.decided_by == TIE_BREAKER).sum()),
            "tie_breaker_only": int((result.decided_by == TIE_BREAKER_ONLY).sum()),
            "accuracy_on_those_rows": float(correct[decided].mean()) if decided.any() else None,
        },
    }
    groups = gold.groups if gold.groups is not None else files[0].groups
    if groups is not None and not text:
        report["by_group"] = {
            name: metrics_by_group(gold_labels, column, groups, label_order=label_order, numeric=numeric)
            for name, column in zip(names, columns, strict=True)
        }
    return report


def report_markdown(report: dict, chart_name: str = "report.png") -> str:
    """The report as Markdown tables."""
    scores = report["scores"]
    keys = [
        k
        for k in (
            "n",
            "accuracy",
            "macro_f1",
            "mcc",
            "mae",
            "exact_match",
            "char_f1",
            "keyword_precision",
            "keyword_recall",
            "keyword_f1",
            "keyword_macro_f1",
            "rouge_l",
            "bleu_4",
            "empty",
            "unparsed",
        )
        if any(k in s for s in scores.values())
    ]
    lines = [
        f"# Ensemble report ({report['n']} rows, gold {report['gold']})",
        "",
        f"Tie-breaker: `{report['tie_breaker']}`.",
        "",
        "## Scores",
        "",
        "| model | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for name, values in scores.items():
        shown = "**ensemble**" if name == ENSEMBLE else f"`{name}`"
        lines.append(f"| {shown} | " + " | ".join(_cell(values.get(k)) for k in keys) + " |")
    names, matrix = report["agreement"]["models"], report["agreement"]["matrix"]
    lines += [
        "",
        "## Pairwise agreement (fraction of rows with the same label)",
        "",
        "| | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    lines += [
        f"| {name} | " + " | ".join(f"{x:.3f}" for x in row) + " |" for name, row in zip(names, matrix, strict=True)
    ]
    tb = report["tie_breaker_decided"]
    lines += [
        "",
        "## How rows were decided",
        "",
        f"The tie-breaker decided {tb['rows']} rows ({tb['fraction']:.1%}): {tb['ties']} ties and "
        f"{tb['tie_breaker_only']} tie-breaker-only rows; ensemble accuracy on them: "
        f"{_cell(tb['accuracy_on_those_rows'])}.",
        "",
        "| decided by | rows |",
        "|---|---|",
    ]
    lines += [f"| {name} | {report['decided_by'][name]} |" for name in DECIDED_BY if report["decided_by"][name]]
    if "by_group" in report:
        lines += ["", "## Accuracy by group", ""]
        groups = list(next(iter(report["by_group"].values())))
        lines += ["| model | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
        lines += [
            f"| {name} | " + " | ".join(_cell(by[g]["accuracy"]) for g in groups) + " |"
            for name, by in report["by_group"].items()
        ]
    lines += ["", f"![scores and agreement]({chart_name})", ""]
    return "\n".join(lines)


def plot_report(report: dict, path: Path) -> None:
    """Bars of each model's main scores next to the agreement heatmap, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = report["scores"]
    metrics = [
        k
        for k in ("accuracy", "macro_f1", "mcc", "exact_match", "char_f1", "keyword_f1")
        if all(k in s for s in scores.values())
    ]
    names = list(scores)
    fig, (bars, heat) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(len(metrics), 1)
    for k, metric in enumerate(metrics):
        bars.bar(np.arange(len(names)) + k * width, [scores[n][metric] for n in names], width, label=metric)
    bars.set_xticks(np.arange(len(names)) + width * (len(metrics) - 1) / 2, labels=names, rotation=30, ha="right")
    bars.set_ylim(min(0.0, *(scores[n][m] for n in names for m in metrics)), 1.0)
    bars.legend()
    bars.set_title("scores")
    matrix = np.asarray(report["agreement"]["matrix"])
    image = heat.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    heat.set_xticks(range(len(names)), labels=names, rotation=30, ha="right")
    heat.set_yticks(range(len(names)), labels=names)
    for (i, j), value in np.ndenumerate(matrix):
        heat.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black")
    heat.set_title("pairwise agreement")
    fig.colorbar(image, ax=heat)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


REPORT_FILES = ("report.json", "report.png", "report.md", "rows.csv")  # what `report --out DIR` writes in DIR


def write_report(report: dict, out_dir: str | Path) -> list[Path]:
    """report.md, report.png and report.json in `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    paths = [out_dir / name for name in REPORT_FILES[:3]]
    atomic_write_json(paths[0], report)
    plot_report(report, paths[1])
    atomic_write_text(paths[2], report_markdown(report, paths[1].name))
    return paths


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def text_scoring(task: TaskSpec, gold: Predictions) -> str | None:
    """The free-text measures for qa/keywords/--text (and with no --task when gold is not a small closed set), else
    None: label metrics."""
    if task.free_text and (task.name != "raw" or not is_closed_set(list(gold.labels))):
        return task.text_metrics
    return None


def score_file(pred_path: str, gold_path: str, task: TaskSpec, plot: str | None = None) -> dict:
    """One predictions file against gold: label metrics (per group too) or free-text metrics."""
    gold = read_gold(gold_path, task)
    dimensions = dict(zip(gold.ids, gold.groups, strict=True)) if gold.groups is not None else None
    pred = read_predictions_csv(pred_path, task, dimensions)
    gold, pred = aligned_predictions([gold, pred])
    report_unparsed(pred)
    result: dict = {"pred": pred_path, "gold": gold_path}
    kind = text_scoring(task, gold)
    if kind:
        result.update(free_text_metrics(list(gold.labels), list(pred.labels), kind))
        if plot:
            print("--plot: no confusion matrix for free-text answers; nothing drawn", file=sys.stderr)
        return result
    numeric = task.numeric if task.labels else None
    result.update(label_metrics(list(gold.labels), list(pred.labels), task.labels, numeric))
    groups = gold.groups if gold.groups is not None else pred.groups
    if groups is not None:
        result["by_group"] = metrics_by_group(
            list(gold.labels), list(pred.labels), groups, label_order=task.labels, numeric=numeric
        )
    if plot:
        plot_confusion(result["confusion"], result["labels"], plot, title=Path(pred_path).stem)
        result["plot"] = plot
    return result


def report_files(paths: list[str], gold_path: str, task: TaskSpec, options: VoteOptions, out: str) -> dict:
    """Vote the files, score each and the ensemble against gold, write report.md/.png/.json to `out`."""
    gold = read_gold(gold_path, task)
    options.gold = options.gold or gold_path
    vote = vote_files(paths, task, options)
    aligned = aligned_predictions([gold, *vote.files])  # same ids as gold, rows in gold's order
    order = pd.Index(vote.files[0].ids).get_indexer(aligned[0].ids)
    reordered = VoteResult(vote.result.winner[order], vote.result.decided_by[order])
    report = ensemble_report(
        aligned[1:],
        aligned[0],
        vote.voted[order],
        reordered,
        vote.tie_breaker,
        text_scoring(task, gold),
        task.labels,
        task.numeric if task.labels else None,
    )
    written = write_report(report, out)
    if text_scoring(task, gold) == "qa":  # each answer's scores, the ensemble's, beside the report
        rows = qa_metrics(list(aligned[0].labels), list(vote.voted[order]), per_row=True)["rows"]
        per_row = Path(out) / REPORT_FILES[3]
        atomic_write_csv(
            per_row,
            [
                {"id": i, "answer": g, "prediction": p, **r}
                for i, g, p, r in zip(aligned[0].ids, aligned[0].labels, vote.voted[order], rows, strict=True)
            ],
        )
        written.append(per_row)
    ensemble = report["scores"][ENSEMBLE]
    return {
        "out": [str(p) for p in written],
        "tie_breaker": vote.tie_breaker,
        "tie_breaker_why": vote.tie_breaker_why,
        "ensemble": {k: v for k, v in ensemble.items() if k not in ("labels", "confusion")},
        "tie_breaker_decided": report["tie_breaker_decided"],
    }
