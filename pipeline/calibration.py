"""Calibration of label scores: one bias per label (per candidate set) fitted so that the predicted label
frequencies match a prior.

`--calibrate` fits one bias per label (per candidate set: per judging dimension, per option count) on a seeded slice
of the TRAIN records (or of `--calibrate-on DATASET`, a held-out part of train) so that the labels' predicted
frequencies match that data's label prior; it never looks at the rows being scored. It fixes the class-imbalance
collapse (every row scored "1") while keeping the ranking. The calibrated predictions go to MODEL_score.csv; the raw ones
to saves/TASK/MODEL/score/MODEL_raw.csv (outside predictions/, so a vote does not count the model twice); both are
in the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from core.tasks import TaskSpec


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def fit_label_bias(scores: np.ndarray, prior: np.ndarray, rounds: int = 50) -> np.ndarray:
    """Per-label biases b such that argmax(scores + b) predicts each label about prior × n times.

    Coordinate updates: for one label, the rows it wins are those whose margin over the best other label exceeds
    -b; b is set between the margins that give the target count. Exact in one step for two labels; a few rounds
    for more. Returns the biases (mean 0) with the smallest count error seen.
    """
    n, k = scores.shape
    target = np.asarray(prior, dtype=float) / np.sum(prior) * n
    bias = np.zeros(k)
    best, best_error = bias.copy(), np.inf
    for _ in range(rounds):
        for label in range(k):
            shifted = scores + bias
            others = np.delete(shifted, label, axis=1).max(axis=1)
            margins = np.sort(scores[:, label] - others)[::-1]  # row wins label iff margin + b > 0
            t = int(round(target[label]))
            if t <= 0:
                bias[label] = -margins[0] - 1.0
            elif t >= n:
                bias[label] = -margins[-1] + 1.0
            else:
                bias[label] = -(margins[t - 1] + margins[t]) / 2
        bias -= bias.mean()
        counts = np.bincount((scores + bias).argmax(axis=1), minlength=k)
        error = np.abs(counts - target).sum()
        if error < best_error - 1e-9:
            best, best_error = bias.copy(), error
        if error < 1:
            break
    return best


def label_prior(records: Sequence[dict], labels: tuple[str, ...]) -> np.ndarray:
    """Frequency of each label among the records' outputs (add-one smoothed)."""
    counts = Counter(str(r.get("output", "")).strip() for r in records)
    return np.array([counts[label] + 1.0 for label in labels]) / (sum(counts[lb] for lb in labels) + len(labels))


def calibration_group(record: dict, labels: tuple[str, ...], task: TaskSpec) -> tuple[str, tuple[str, ...]]:
    """Rows share biases when they share a group (judge: dimension) and a candidate set (logic: the option count)."""
    return str(task.group_of(record) or ""), tuple(labels)


def fit_calibration(
    train: Sequence[dict],
    train_sets: Sequence[tuple[str, ...]],
    slice_idx: Sequence[int],
    slice_scores: Sequence[np.ndarray],
    task: TaskSpec,
    min_rows: int = 8,
) -> dict[tuple, dict]:
    """{group: {group, labels, prior, bias, rows}}: the prior over all train records of the group, the biases
    from its scored slice rows; a group with fewer than `min_rows` scored rows keeps bias 0."""
    groups = [calibration_group(r, s, task) for r, s in zip(train, train_sets, strict=True)]
    out = {}
    for group in dict.fromkeys(groups):
        labels = group[1]
        prior = label_prior([r for r, g in zip(train, groups, strict=True) if g == group], labels)
        rows = [s for i, s in zip(slice_idx, slice_scores, strict=True) if groups[i] == group]
        logp = np.log(np.stack([softmax(s) for s in rows])) if rows else np.zeros((0, len(labels)))
        bias = fit_label_bias(logp, prior) if len(rows) >= min_rows else np.zeros(len(labels))
        out[group] = {
            "group": group[0],
            "labels": list(labels),
            "prior": prior.round(4).tolist(),
            "bias": bias.round(4).tolist(),
            "rows": len(rows),
        }
    return out


def apply_calibration(
    records: Sequence[dict],
    scores: Sequence[np.ndarray],
    sets: Sequence[tuple[str, ...]],
    calibration: dict,
    task: TaskSpec,
) -> list[np.ndarray]:
    """Log-probabilities over the candidates plus the group's biases (none for a group calibration did not see)."""
    out = []
    for record, s, labels in zip(records, scores, sets, strict=True):
        fitted = calibration.get(calibration_group(record, labels, task))
        bias = np.asarray(fitted["bias"]) if fitted else np.zeros(len(labels))
        out.append(np.log(softmax(s)) + bias)
    return out
