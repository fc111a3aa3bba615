"""Scores of predictions against gold labels: accuracy, macro-F1, MCC, MAE and the confusion matrix, or, for
free-text answers, exact match and character-level F1 after normalisation (OpenCompass-style custom QA).

Computed from the confusion matrix with numpy (tests check them against scikit-learn). An unparsed prediction
(None) counts as wrong: it is a predicted class of its own for accuracy and MCC, no label's hit for macro-F1
(averaged over the labels seen in gold or parsed predictions, like scikit-learn's default), and it is left out of
the confusion matrix and of MAE, which is over parsed rows (`mae_n`).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.extract import normalize_text

CLOSED_SET_MAX = 20  # with no --task, gold with more distinct labels than this is scored as free text


def label_metrics(
    gold: Sequence[str],
    pred: Sequence[str | None],
    label_order: Sequence[str] | None = None,
    numeric: bool | None = None,
) -> dict:
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


KEYWORD_SEPARATORS = re.compile(r"[;,]")  # after NFKC: "；" → ";", "，" → ","


def keyword_set(text: str | None) -> set[str]:
    """A paper's keywords: split on ; or , (full-width too), case folded, whitespace collapsed, a closing full stop
    dropped ("ros." is "ros": 921 of the 2358 iFLYTEK A-board keyword lists end in one), empties dropped."""
    if not text:
        return set()
    folded = unicodedata.normalize("NFKC", str(text)).casefold()
    words = (" ".join(part.split()).rstrip(".。").rstrip() for part in KEYWORD_SEPARATORS.split(folded))
    return {word for word in words if word}


def keyword_metrics(gold: Sequence[str], pred: Sequence[str | None]) -> dict:
    """Keyword-level precision, recall and F1: set match per paper, micro (pooled) and macro (mean per paper)."""
    hits = predicted = expected = 0
    per_paper = []
    for answer, prediction in zip(gold, pred, strict=True):
        g, p = keyword_set(answer), keyword_set(prediction)
        tp = len(g & p)
        hits, predicted, expected = hits + tp, predicted + len(p), expected + len(g)
        precision = tp / len(p) if p else 0.0
        recall = tp / len(g) if g else 0.0
        per_paper.append((precision, recall, _f1(precision, recall)))
    micro_p = hits / predicted if predicted else 0.0
    micro_r = hits / expected if expected else 0.0
    macro = np.mean(per_paper, axis=0) if per_paper else np.zeros(3)
    return {
        "n": len(per_paper),
        "keyword_precision": micro_p,
        "keyword_recall": micro_r,
        "keyword_f1": _f1(micro_p, micro_r),
        "keyword_macro_precision": float(macro[0]),
        "keyword_macro_recall": float(macro[1]),
        "keyword_macro_f1": float(macro[2]),
        "unparsed": sum(prediction is None for prediction in pred),
    }


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def qa_scores(answer: str, prediction: str | None) -> dict[str, float]:
    """One answer's ROUGE-L and BLEU-4 (×100), computed as LLaMA-Factory's predict does (its ComputeSimilarity):
    ROUGE-L F over jieba words (rouge_chinese), sentence BLEU-4 over characters with smoothing method 3 (nltk)."""
    import jieba
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    prediction = prediction or ""
    hypothesis, reference = list(jieba.cut(prediction)), list(jieba.cut(answer))
    if not " ".join(hypothesis).split() or not " ".join(reference).split():
        rouge_l = 0.0
    else:
        rouge_l = Rouge().get_scores(" ".join(hypothesis), " ".join(reference))[0]["rouge-l"]["f"]
    bleu = sentence_bleu([list(answer)], list(prediction), smoothing_function=SmoothingFunction().method3)
    return {"rouge_l": round(rouge_l * 100, 4), "bleu_4": round(bleu * 100, 4)}


def qa_metrics(gold: Sequence[str], pred: Sequence[str | None], per_row: bool = False) -> dict:
    """Free-text answers: exact match and char F1 (text_metrics) plus mean ROUGE-L and BLEU-4 on jieba-segmented
    Chinese, the measures LLaMA-Factory's own predict reports; `per_row` adds each row's scores."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    result = text_metrics(gold, pred)
    rows = [qa_scores(answer, prediction) for answer, prediction in zip(gold, pred, strict=True)]
    result["rouge_l"] = float(np.mean([r["rouge_l"] for r in rows])) if rows else 0.0
    result["bleu_4"] = float(np.mean([r["bleu_4"] for r in rows])) if rows else 0.0
    if per_row:
        result["rows"] = [
            {"exact_match": float(normalize_text(a) == normalize_text(p or "")), **r}
            for a, p, r in zip(gold, pred, rows, strict=True)
        ]
    return result


FREE_TEXT_METRICS = {
    "text": text_metrics,
    "keywords": lambda g, p: {**text_metrics(g, p), **keyword_metrics(g, p)},
    "qa": qa_metrics,
}


def free_text_metrics(gold: Sequence[str], pred: Sequence[str | None], kind: str = "text") -> dict:
    """The measures a free-text task is judged by: `text` (exact match, char F1), `keywords`, or `qa`; `empty`
    counts the empty answers (answers that score 0, unlike `unparsed`: None, no answer at all)."""
    empty = sum(prediction is not None and not str(prediction).strip() for prediction in pred)
    return {**FREE_TEXT_METRICS[kind](gold, pred), "empty": empty}


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


def metrics_by_group(
    gold: Sequence[str], pred: Sequence[str | None], groups: Sequence[str] | np.ndarray, **kwargs: Any
) -> dict:
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
