"""Scores of predictions against gold labels: accuracy, macro-F1, MCC, MAE and the confusion matrix, or, for
free-text answers, exact match and character-level F1 after normalisation (OpenCompass-style custom QA).

Computed from the confusion matrix with numpy (tests check them against scikit-learn). An unparsed prediction
(None) counts as wrong: it is a predicted class of its own for accuracy and MCC, no label's hit for macro-F1
(averaged over the labels seen in gold or parsed predictions, like scikit-learn's default), and it is left out of
the confusion matrix and of MAE, which is over parsed rows (`mae_n`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.extract import normalize_text

CLOSED_SET_MAX = 20  # with no --task, gold with more distinct labels than this is scored as free text


def label_metrics(gold: Sequence[str], pred: Sequence[str | None], label_order: Sequence[str] | None = None,
                  numeric: bool | None = None) -> dict:
    """n, accuracy, macro_f1, mcc, (mae, mae_n), unparsed, labels and confusion (rows gold, columns predicted)."""
    gold = [str(label) for label in gold]
    pred = [None if label is None else str(label) for label in pred]
    present = set(gold) | {label for label in pred if label is not None}
    order = [label for label in (label_order or []) if label in present]
    order += sorted(present - set(order), key=_sort_key)
    index = {label: k for k, label in enumerate(order)}
    unparsed_code = len(order)
    g = np.array([index[label] for label in gold], dtype=np.int64)
    p = np.array([unparsed_code if label is None else index[label] for label in pred], dtype=np.int64)
    full = np.zeros((len(order) + 1, len(order) + 1), dtype=np.int64)
    np.add.at(full, (g, p), 1)
    n = len(gold)
    tp = np.diag(full)[: len(order)]
    support_true, support_pred = full.sum(axis=1)[: len(order)], full.sum(axis=0)[: len(order)]
    denominator = support_true + support_pred
    f1 = np.divide(2 * tp, denominator, out=np.zeros(len(order)), where=denominator > 0)
    result: dict[str, Any] = {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1.mean()) if len(order) else 0.0,
        "mcc": matthews_from_confusion(full),
        "unparsed": int((p == unparsed_code).sum()),
    }
    if numeric if numeric is not None else all(_is_number(label) for label in order):
        parsed = p != unparsed_code
        values = np.array([float(label) for label in order])
        errors = np.abs(values[g[parsed]] - values[p[parsed]])
        result["mae"] = float(errors.mean()) if errors.size else None
        result["mae_n"] = int(parsed.sum())
    result["labels"] = order
    result["confusion"] = full[: len(order), : len(order)].tolist()
    return result


def matthews_from_confusion(confusion: np.ndarray) -> float:
    """Multiclass Matthews correlation (Gorodkin's R_K, as scikit-learn computes it); 0.0 when undefined."""
    confusion = np.asarray(confusion, dtype=float)
    t, p = confusion.sum(axis=1), confusion.sum(axis=0)
    c, s = np.trace(confusion), confusion.sum()
    denominator = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - t @ p) / denominator) if denominator > 0 else 0.0


def text_metrics(gold: Sequence[str], pred: Sequence[str | None]) -> dict:
    """n, exact_match and char_f1 (means over rows) after normalize_text; unparsed (None) scores 0."""
    exact, f1 = [], []
    for answer, prediction in zip(gold, pred, strict=True):
        if prediction is None:
            exact.append(0.0)
            f1.append(0.0)
            continue
        a, b = normalize_text(answer), normalize_text(prediction)
        exact.append(float(a == b))
        f1.append(char_f1(a, b))
    n = len(exact)
    return {
        "n": n,
        "exact_match": float(np.mean(exact)) if n else 0.0,
        "char_f1": float(np.mean(f1)) if n else 0.0,
        "unparsed": sum(prediction is None for prediction in pred),
    }


def char_f1(gold: str, pred: str) -> float:
    """F1 of the character multisets (whitespace ignored): the usual Chinese QA token F1 with characters as tokens."""
    g, p = Counter(gold.replace(" ", "")), Counter(pred.replace(" ", ""))
    if not g and not p:
        return 1.0
    common = sum((g & p).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(g.values())
    return 2 * precision * recall / (precision + recall)


def is_closed_set(gold: Sequence[str]) -> bool:
    """Whether gold labels look like classes (few distinct values) rather than free text."""
    return len(set(gold)) <= CLOSED_SET_MAX


def metrics_by_group(gold: Sequence[str], pred: Sequence[str | None], groups: Sequence[str] | np.ndarray,
                     **kwargs: Any) -> dict:
    """label_metrics per group value (judge: per dimension), without the confusion matrices."""
    gold_array, pred_array = np.asarray(gold, dtype=object), np.asarray(pred, dtype=object)
    group_array = np.asarray(groups)
    out = {}
    for group in dict.fromkeys(group_array.tolist()):
        mask = group_array == group
        metrics = label_metrics(gold_array[mask].tolist(), pred_array[mask].tolist(), **kwargs)
        out[str(group)] = {k: v for k, v in metrics.items() if k not in ("labels", "confusion")}
    return out


def plot_confusion(confusion: Sequence[Sequence[int]], labels: Sequence[str], path, title: str = "") -> None:
    """Draw the confusion matrix (rows gold, columns predicted) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.fileio import atomic_open

    matrix = np.asarray(confusion)
    size = max(3.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels=labels)
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def _sort_key(label: str):
    return (0, float(label), label) if _is_number(label) else (1, 0.0, label)


def _is_number(label: str) -> bool:
    try:
        float(label)
    except (TypeError, ValueError):
        return False
    return True
