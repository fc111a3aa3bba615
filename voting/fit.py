"""Ensembles fitted on out-of-fold (OOF) probabilities, and honest figures for each: pure functions on arrays.

    P     (members, rows, labels) each member's probabilities, labels in the task's order
    mask  (rows, labels) the labels each row may take (judge: its dimension's, logic: its options)
    y     (rows,) the gold label codes          folds (rows,) the fold each OOF row was held out in

A method is a `fit(P, mask, y) -> params` and a `proba(params, P, mask) -> (rows, labels)` (params are JSON, as
submissions/TASK/ensemble.json stores them). `nested_cv` fits each method on K−1 folds' rows and predicts the
held-out fold, so every figure is on rows the fit never saw; `bootstrap` gives its 95% interval and the paired
interval of its margin over the best single member (the same resampled rows for both sides).

Methods: each member alone; plurality (ties: the member best on the fitting rows); soft vote (mean probabilities);
greedy ensemble selection with replacement on the log-loss (Caruana et al. 2004; AutoGluon's weighted ensemble);
weights fitted by Powell on the log-loss (softmax-parametrised); a stacked multinomial logistic regression on the
members' log-probabilities; for ordinal numeric labels (judge 1–5) the soft vote's expected score Σ p(k)·k with
cut points fitted on the metric. The three fitted methods (greedy, Powell, stacked) end with a per-label decision
bias fitted on the metric (`fit_bias`): log-loss fits alone predict the majority label on an imbalanced task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voting.rules import decide, vote_counts

EPS = 1e-6  # probabilities are clipped to [EPS, 1] before a log
GREEDY_ROUNDS = 40  # ensemble selection: members added (with replacement), the best prefix kept
BOOTSTRAP = 1000
BIAS_GRID, BIAS_ROUNDS = 64, 2  # fit_bias: candidate biases per label, passes over the labels
ORDINAL_MIN = 3  # an ordinal scale has at least this many numeric labels


@dataclass
class Context:
    """What every method knows besides the arrays: the members' names, the labels, the metric it serves."""

    names: list[str]
    labels: list[str]
    metric: str = "accuracy"
    values: np.ndarray = field(init=False)  # each label as a number (NaN where not numeric)

    def __post_init__(self) -> None:
        self.values = np.array([_number(label) for label in self.labels])


def _number(label: str) -> float:
    try:
        return float(label)
    except ValueError:
        return float("nan")


# ---------------------------------------------------------------- the metric, from a confusion matrix (fast enough
# for a thousand bootstrap resamples of every method)


def confusion(y: np.ndarray, pred: np.ndarray, n_labels: int) -> np.ndarray:
    return np.bincount(y * n_labels + pred, minlength=n_labels * n_labels).reshape(n_labels, n_labels)


def metric_of(matrix: np.ndarray, name: str, values: np.ndarray) -> float:
    """accuracy, mcc, macro_f1 (over labels seen in gold or predictions, as core.metrics), mae (negated: higher is
    better for every metric here) or qwk (quadratic weighted kappa on the labels' numeric values)."""
    matrix = matrix.astype(float)
    n = matrix.sum()
    if n == 0:
        return 0.0
    if name == "accuracy":
        return float(np.trace(matrix) / n)
    if name == "mcc":
        from core.metrics import matthews_from_confusion

        return matthews_from_confusion(matrix)
    true, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    if name == "macro_f1":
        seen = (true + predicted) > 0
        f1 = 2 * np.diag(matrix)[seen] / (true + predicted)[seen]
        return float(f1.mean())
    numeric = np.nan_to_num(values)
    if name == "mae":
        distance = np.abs(numeric[:, None] - numeric[None, :])
        return -float((matrix * distance).sum() / n)
    if name == "qwk":
        span = max(float(numeric.max() - numeric.min()), 1.0)
        weight = (numeric[:, None] - numeric[None, :]) ** 2 / span**2
        expected = np.outer(true, predicted) / n
        denominator = (weight * expected).sum()
        return float(1 - (weight * matrix).sum() / denominator) if denominator > 0 else 0.0
    raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")


METRICS = ("accuracy", "mcc", "macro_f1", "mae", "qwk")


def default_metric(labels: Sequence[str]) -> str:
    """The task's own figure: MCC for two labels (CoLA, QQP), QWK for an ordinal scale (judge), else accuracy."""
    if len(labels) == 2:
        return "mcc"
    numeric = [label for label in labels if not np.isnan(_number(label))]
    return "qwk" if len(numeric) >= ORDINAL_MIN and len(numeric) == len(labels) else "accuracy"


def score(y: np.ndarray, pred: np.ndarray, context: Context, name: str | None = None) -> float:
    return metric_of(confusion(y, pred, len(context.labels)), name or context.metric, context.values)


# ---------------------------------------------------------------- probabilities → labels


def masked(probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Probabilities on each row's own labels, renormalised (a row with no mass: uniform over its labels)."""
    out = np.where(mask, probs, 0.0)
    total = out.sum(axis=1, keepdims=True)
    uniform = mask / np.maximum(mask.sum(axis=1, keepdims=True), 1)
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), uniform)


def predict(probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The most probable allowed label per row (ties: the first in the task's order)."""
    return np.argmax(np.where(mask, probs, -1.0), axis=1)


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], EPS, 1.0))))


def weighted(P: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return masked(np.tensordot(weights / weights.sum(), P, axes=1), mask)


# ---------------------------------------------------------------- the methods

Params = dict[str, Any]


def member_method(index: int) -> tuple[Callable[..., Params], Callable[..., np.ndarray]]:
    return (lambda P, mask, y, ctx: {"member": ctx.names[index]}), (
        lambda params, P, mask, ctx: masked(P[ctx.names.index(params["member"])], mask)
    )


def fit_plurality(P: np.ndarray, mask: np.ndarray, y: np.ndarray, ctx: Context) -> Params:
    best = max(range(len(ctx.names)), key=lambda m: score(y, predict(P[m], mask), ctx))
    return {"tie_breaker": ctx.names[best]}


def proba_plurality(params: Params, P: np.ndarray, mask: np.ndarray, ctx: Context) -> np.ndarray:
    codes = np.stack([predict(P[m], mask) for m in range(len(P))], axis=1)
    result = decide(vote_counts(codes, len(ctx.labels)), codes[:, ctx.names.index(params["tie_breaker"])])
    return np.eye(len(ctx.labels))[result.winner]


def fit_soft(P: np.ndarray, mask: np.ndarray, y: np.ndarray, ctx: Context) -> Params:
    return {"weights": dict.fromkeys(ctx.names, 1.0 / len(ctx.names))}


def proba_weights(params: Params, P: np.ndarray, mask: np.ndarray, ctx: Context) -> np.ndarray:
    return weighted(P, np.array([params["weights"][name] for name in ctx.names]), mask)


def fit_greedy(P: np.ndarray, mask: np.ndarray, y: np.ndarray, ctx: Context) -> Params:
    """Ensemble selection with replacement: add the member that lowers the log-loss most, GREEDY_ROUNDS times;
    the weights are the counts of the best prefix."""
    counts = np.zeros(len(P))
    best_counts, best_loss = counts.copy(), np.inf
    for _ in range(GREEDY_ROUNDS):
        losses = []
        for m in range(len(P)):
            trial = counts.copy()
            trial[m] += 1
            losses.append(log_loss(weighted(P, trial, mask), y))
        counts[int(np.argmin(losses))] += 1
        if min(losses) < best_loss - 1e-12:
            best_loss, best_counts = min(losses), counts.copy()
    return {"weights": dict(zip(ctx.names, (best_counts / best_counts.sum()).round(6).tolist(), strict=True))}


def fit_powell(P: np.ndarray, mask: np.ndarray, y: np.ndarray, ctx: Context) -> Params:
    """Weights = softmax(θ), θ minimising the log-loss by scipy's Powell (no gradients; a few members)."""
    from scipy.optimize import minimize

    def loss(theta: np.ndarray) -> float:
        w = np.exp(theta - theta.max())
        return log_loss(weighted(P, w, mask), y)

    theta = minimize(loss, np.zeros(len(P)), method="Powell", options={"xtol": 1e-3, "ftol": 1e-6}).x
    w = np.exp(theta - theta.max())
    return {"weights": dict(zip(ctx.names, (w / w.sum()).round(6).tolist(), strict=True))}


def features(P: np.ndarray) -> np.ndarray:
    """The stacker's inputs: every member's log-probability of every label, side by side."""
    return np.concatenate(list(np.log(np.clip(P, EPS, 1.0))), axis=1)


def fit_stacked(P: np.ndarray, mask: np.ndarray, y: np.ndarray, ctx: Context) -> Params:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=2000)  # lbfgs: the multinomial loss over all classes
    model.fit(features(P), y)
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # sklearn keeps one row for two classes: the second's log-odds
        coef, intercept = np.vstack([np.zeros_like(coef[0]), coef[0]]), np.array([0.0, intercept[0]])
    return {
        "classes": [ctx.labels[int(c)] for c in model.classes_],
        "coef": coef.round(6).tolist(),
        "intercept": intercept.round(6).tolist(),
        "features": "log p(label) of each member, members in order, labels in the task's order",
    }


def proba_stacked(params: Params, P: np.ndarray, mask: np.ndarray, ctx: Context) -> np.ndarray:
    logits = features(P) @ np.asarray(params["coef"]).T + np.asarray(params["intercept"])
    logits = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = np.zeros((P.shape[1], len(ctx.labels)))
    probs[:, [ctx.labels.index(label) for label in params["classes"]]] = logits
    return masked(probs, mask)


def ordinal_rows(mask: np.ndarray, ctx: Context) -> np.ndarray:
    """Rows whose own labels are an ordinal scale (at least ORDINAL_MIN numeric labels): judge's 1–5 rows."""
    numeric = ~np.isnan(ctx.values)
    return (mask.sum(axis=1) >= ORDINAL_MIN) & ~(mask & ~numeric).any(axis=1)


def cut(expected: np.ndarray, scale: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """The scale's index of each expected score (cut points ascending: below the first → the lowest label)."""
    return np.searchsorted(np.sort(cuts), expected, side="right").clip(0, len(scale) - 1)


def fit_ordinal(P: np.ndarray, mask: np.ndarray, y: np.ndarray, ctx: Context) -> Params:
    """Σ p(k)·k of the soft vote, cut into labels at points fitted on the metric (coordinate search, 3 sweeps)."""
    rows = ordinal_rows(mask, ctx)
    scale = np.flatnonzero(mask[rows].any(axis=0)) if rows.any() else np.array([], dtype=int)
    if len(scale) < ORDINAL_MIN:
        return {"scale": [], "cut_points": []}
    values = ctx.values[scale]
    expected = weighted(P[:, rows], np.ones(len(P)), mask[rows]) @ np.nan_to_num(ctx.values)
    cuts = (values[:-1] + values[1:]) / 2

    def fitness(candidate: np.ndarray) -> float:
        return score(y[rows], scale[cut(expected, values, candidate)], ctx)

    for _ in range(3):
        for k in range(len(cuts)):
            low = values[k] if k == 0 else cuts[k - 1]
            high = values[k + 1] if k == len(cuts) - 1 else cuts[k + 1]
            grid = np.linspace(low, high, 21)
            trials = [fitness(np.concatenate([cuts[:k], [g], cuts[k + 1 :]])) for g in grid]
            cuts[k] = grid[int(np.argmax(trials))]
    return {"scale": [ctx.labels[i] for i in scale], "cut_points": cuts.round(4).tolist()}


def proba_ordinal(params: Params, P: np.ndarray, mask: np.ndarray, ctx: Context) -> np.ndarray:
    """Ordinal rows: the label the cut points give (one-hot); other rows (judge 选择题): the soft vote."""
    probs = weighted(P, np.ones(len(P)), mask)
    rows = ordinal_rows(mask, ctx)
    if params["scale"] and rows.any():
        scale = np.array([ctx.labels.index(label) for label in params["scale"]])
        expected = probs[rows] @ np.nan_to_num(ctx.values)
        probs[rows] = np.eye(len(ctx.labels))[scale[cut(expected, ctx.values[scale], np.array(params["cut_points"]))]]
    return probs


def fit_bias(probs: np.ndarray, mask: np.ndarray, y: np.ndarray, ctx: Context) -> np.ndarray:
    """Per-label log-biases b maximising the metric of argmax(log p + b) on these rows: the decision rule fitted to
    the task's metric. Probabilities fitted on the log-loss put the majority label first on almost every row of an
    imbalanced task (CoLA: MCC 0); the bias moves the boundary. Coordinate ascent, label 0 the reference, each
    label's candidates the quantiles of the bias at which it starts winning a row."""
    logp = np.where(mask, np.log(np.clip(probs, EPS, 1.0)), -np.inf)
    bias = np.zeros(len(ctx.labels))
    best = score(y, np.argmax(logp + bias, axis=1), ctx)  # masked labels: -inf
    for _ in range(BIAS_ROUNDS):
        for k in range(1, len(ctx.labels)):
            others = np.where(np.arange(len(bias)) == k, -np.inf, logp + bias).max(axis=1)
            wins_at = (others - logp[:, k])[mask[:, k]]
            wins_at = wins_at[np.isfinite(wins_at)]
            if not wins_at.size:
                continue
            for candidate in np.unique(np.quantile(wins_at, np.linspace(0, 1, BIAS_GRID))) + 1e-9:
                trial = bias.copy()
                trial[k] = candidate
                figure = score(y, np.argmax(logp + trial, axis=1), ctx)
                if figure > best + 1e-12:
                    best, bias = figure, trial
    return bias


def with_bias(
    method: tuple[Callable[..., Params], Callable[..., np.ndarray]],
) -> tuple[Callable[..., Params], Callable[..., np.ndarray]]:
    """A fitted method followed by its decision bias (fit_bias) fitted on the same rows; stored as params["bias"]."""
    fit, proba = method

    def fit_then_bias(P: np.ndarray, mask: np.ndarray, y: np.ndarray, ctx: Context) -> Params:
        params = fit(P, mask, y, ctx)
        return {**params, "bias": fit_bias(proba(params, P, mask, ctx), mask, y, ctx).round(6).tolist()}

    def proba_with_bias(params: Params, P: np.ndarray, mask: np.ndarray, ctx: Context) -> np.ndarray:
        bias = np.asarray(params.get("bias", np.zeros(len(ctx.labels))))
        return masked(proba(params, P, mask, ctx) * np.exp(bias - bias.max()), mask)

    return fit_then_bias, proba_with_bias


COMBINERS: dict[str, tuple[Callable[..., Params], Callable[..., np.ndarray]]] = {
    "plurality": (fit_plurality, proba_plurality),
    "soft": (fit_soft, proba_weights),
    "greedy": with_bias((fit_greedy, proba_weights)),
    "powell": with_bias((fit_powell, proba_weights)),
    "stacked": with_bias((fit_stacked, proba_stacked)),
    "ordinal": (fit_ordinal, proba_ordinal),
}
FITTED = (
    "greedy",
    "powell",
    "stacked",
    "ordinal",
)  # fitted to the rows they are given (plurality: only its tie-breaker)


def methods_for(ctx: Context, mask: np.ndarray) -> dict[str, tuple[Callable[..., Params], Callable[..., np.ndarray]]]:
    """Every member alone, then the combiners; `ordinal` only where rows have an ordinal scale."""
    methods = {name: member_method(m) for m, name in enumerate(ctx.names)}
    for name, method in COMBINERS.items():
        if name != "ordinal" or ordinal_rows(mask, ctx).any():
            methods[name] = method
    return methods


def nested_cv(P: np.ndarray, mask: np.ndarray, y: np.ndarray, folds: np.ndarray, ctx: Context) -> dict[str, np.ndarray]:
    """Each method's predicted code per row, every row predicted by a fit on the other folds' rows only."""
    out: dict[str, np.ndarray] = {}
    for name, (fit, proba) in methods_for(ctx, mask).items():
        codes = np.zeros(len(y), dtype=np.int64)
        for fold in np.unique(folds):
            held = folds == fold
            params = fit(P[:, ~held], mask[~held], y[~held], ctx)
            codes[held] = predict(proba(params, P[:, held], mask[held], ctx), mask[held])
        out[name] = codes
    return out


def bootstrap(
    predictions: dict[str, np.ndarray], y: np.ndarray, ctx: Context, seed: int = 0, rounds: int = BOOTSTRAP
) -> dict[str, Any]:
    """Per method: the metric, its bootstrap 95% interval, and the margin over the best single member with its
    paired interval (each resample's rows are the same for every method)."""
    rng = np.random.default_rng(seed)
    n_labels = len(ctx.labels)
    point = {name: score(y, codes, ctx) for name, codes in predictions.items()}
    best_member = max(ctx.names, key=lambda name: point[name])
    draws = {name: np.empty(rounds) for name in predictions}
    for r in range(rounds):
        pick = rng.integers(0, len(y), len(y))
        for name, codes in predictions.items():
            draws[name][r] = metric_of(confusion(y[pick], codes[pick], n_labels), ctx.metric, ctx.values)
    figures: dict[str, dict[str, Any]] = {}
    for name in predictions:
        margin = draws[name] - draws[best_member]
        figures[name] = {
            "metric": round(point[name], 4),
            "ci95": np.percentile(draws[name], [2.5, 97.5]).round(4).tolist(),
            "margin": round(point[name] - point[best_member], 4),
            "margin_ci95": np.percentile(margin, [2.5, 97.5]).round(4).tolist(),
            "member": name in ctx.names,
        }
    return {"best_member": best_member, "methods": figures}


def fit_method(name: str, P: np.ndarray, mask: np.ndarray, y: np.ndarray, ctx: Context) -> Params:
    """The chosen method fitted on every OOF row (what ensemble.json stores)."""
    return methods_for(ctx, mask)[name][0](P, mask, y, ctx)


def apply_method(name: str, params: Params, P: np.ndarray, mask: np.ndarray, ctx: Context) -> np.ndarray:
    """(rows, labels) probabilities of a fitted method on new rows (a member's name is that member alone)."""
    if name in ctx.names:
        return masked(P[ctx.names.index(name)], mask)
    return COMBINERS[name][1](params, P, mask, ctx)
