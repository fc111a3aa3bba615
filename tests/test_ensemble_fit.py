"""Issue #23 part 3: ensembles fitted on out-of-fold files, on synthetic members (no training): one carries the
signal, one is noise. The noise member gets the lower weight, the fit is at least as good as the best member on
nested CV, and the refusals (fold hashes, a member changed or missing since the fit) name the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import write_dataset

from core.origin import origin_path
from core.tasks import labels_task
from voting.cli import main as voting_main
from voting.fit import Context, bootstrap, fit_bias, fit_greedy, fit_powell, fit_stacked, nested_cv, score

N, FOLDS = 400, 5


def synthetic(seed: int = 0, n: int = N, labels: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, y, folds): member 0 is right 80% of the time with confident probabilities, member 1 is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, labels, n)
    right = rng.random(n) < 0.8
    guess = np.where(right, y, (y + rng.integers(1, labels, n)) % labels)
    signal = np.full((n, labels), 0.3 / (labels - 1))
    signal[np.arange(n), guess] = 0.7
    noise = rng.dirichlet(np.ones(labels), n)
    return np.stack([signal, noise]), y, np.arange(n) % FOLDS


def test_the_decision_bias_recovers_an_imbalanced_task_that_argmax_predicts_as_one_label():
    """CoLA's shape: 70% of rows "1", every probability of "1" above 0.5 but higher where gold is "1": argmax says
    "1" everywhere (MCC 0); the fitted bias moves the boundary between the two groups (MCC near 1)."""
    rng = np.random.default_rng(0)
    y = (rng.random(N) < 0.7).astype(int)
    p1 = np.clip(np.where(y == 1, 0.8, 0.6) + rng.normal(0, 0.03, N), 0.51, 0.99)
    probs, mask = np.stack([1 - p1, p1], axis=1), np.ones((N, 2), dtype=bool)
    ctx = Context(["m"], ["0", "1"], "mcc")
    assert score(y, probs.argmax(axis=1), ctx) == 0.0
    bias = fit_bias(probs, mask, y, ctx)
    assert bias[0] == 0.0 and score(y, np.argmax(np.log(probs) + bias, axis=1), ctx) > 0.9
    # a label a row may not take is never chosen, whatever its bias
    three = np.hstack([probs * 0.5, np.full((N, 1), 0.5)])
    only_two = np.ones((N, 3), dtype=bool)
    only_two[:, 2] = False
    bias3 = fit_bias(three, only_two, y, Context(["m"], ["0", "1", "2"], "accuracy"))
    assert not (np.argmax(np.where(only_two, np.log(three), -np.inf) + bias3, axis=1) == 2).any()


def test_noise_member_gets_the_lower_weight_and_the_fit_is_no_worse_than_the_best_member():
    P, y, folds = synthetic()
    mask = np.ones((N, 2), dtype=bool)
    ctx = Context(["signal", "noise"], ["0", "1"], "mcc")
    for fit in (fit_greedy, fit_powell):
        weights = fit(P, mask, y, ctx)["weights"]
        assert weights["noise"] < weights["signal"], (fit.__name__, weights)
    coef = np.abs(np.asarray(fit_stacked(P, mask, y, ctx)["coef"]))
    assert coef[:, 2:].sum() < coef[:, :2].sum()  # the noise member's log-probabilities weigh less
    figures = bootstrap(nested_cv(P, mask, y, folds, ctx), y, ctx, rounds=200)
    assert figures["best_member"] == "signal"
    methods = figures["methods"]
    for name in ("greedy", "powell"):  # the weights drop the noise: as good as the signal member alone
        assert methods[name]["metric"] >= methods["signal"]["metric"] - 1e-9, (name, methods)
    low, high = methods["stacked"]["margin_ci95"]  # stacking fits the noise a little: not worse beyond chance
    assert low <= methods["stacked"]["margin"] <= high and high >= 0
    assert methods["soft"]["metric"] < methods["signal"]["metric"]  # the unfitted mean is dragged down by noise
    assert methods["noise"]["metric"] < methods["signal"]["metric"]


def test_ordinal_scale_gets_cut_points_and_qwk():
    P, y, folds = synthetic(seed=1, labels=5)
    task = labels_task("1,2,3,4,5")
    ctx = Context(["signal", "noise"], list(task.labels or ()), "qwk")
    mask = np.ones((N, 5), dtype=bool)
    predictions = nested_cv(P, mask, y, folds, ctx)
    assert "ordinal" in predictions
    figures = bootstrap(predictions, y, ctx, rounds=100)
    assert figures["methods"]["ordinal"]["metric"] > figures["methods"]["noise"]["metric"]


def write_member(folder: Path, name: str, ids: list[str], probs: np.ndarray, folds: np.ndarray, fold_sha: str) -> Path:
    """name_oof.csv (on train ids) and name_cv.csv (on test ids), each with its origin naming the fold hash."""
    frame = pd.DataFrame({"id": ids, "fold": folds, "prediction": np.argmax(probs, axis=1).astype(str)})
    frame["prob_0"], frame["prob_1"] = probs[:, 0].round(6), (1 - probs[:, 0].round(6))
    oof = folder / f"{name}_oof.csv"
    frame.to_csv(oof, index=False)
    cv = frame.drop(columns="fold").head(20).assign(id=[f"test-{i}" for i in range(20)])
    cv.to_csv(folder / f"{name}_cv.csv", index=False)
    for path, data in ((oof, "data/cola_train.json"), (folder / f"{name}_cv.csv", "data/cola_test.json")):
        origin_path(path).write_text(json.dumps({"data_file": data, "folds_sha256": fold_sha}), encoding="utf-8")
    return oof


@pytest.fixture
def members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.chdir(tmp_path)
    P, y, folds = synthetic()
    ids = [f"train-{i}" for i in range(N)]
    records = [
        {"id": i, "instruction": "?", "input": "x", "output": str(label)} for i, label in zip(ids, y, strict=True)
    ]
    write_dataset(tmp_path / "data", "cola_train", records)
    write_dataset(
        tmp_path / "data", "cola_test", [{**r, "id": f"test-{k}", "output": ""} for k, r in enumerate(records[:20])]
    )
    folder = tmp_path / "predictions" / "cola"
    folder.mkdir(parents=True)
    return {name: write_member(folder, name, ids, P[m], folds, "abc") for m, name in enumerate(("signal", "noise"))}


def fit(members: dict[str, Path], capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str, str]:
    code = voting_main(["ensemble", "fit", *map(str, members.values()), "--task", "cola", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_writes_report_and_ensemble_json_and_vote_applies_it(members, capsys):
    code, out, err = fit(members, capsys)
    assert code == 0, err
    ensemble = json.loads(Path("submissions/cola/ensemble.json").read_text(encoding="utf-8"))
    assert ensemble["fold_sha256"] == "abc" and ensemble["metric"] == "mcc"
    assert [m["name"] for m in ensemble["members"]] == ["signal", "noise"]
    assert all(len(m["oof_sha256"]) == 64 and m["cv_sha256"] for m in ensemble["members"])
    report = Path("submissions/cola/ensemble/report.md").read_text(encoding="utf-8")
    assert "margin over the best member" in report and "`signal`" in report
    assert Path("submissions/cola/ensemble/report.png").stat().st_size > 1000
    code = voting_main(["vote", "--ensemble", "submissions/cola/ensemble.json", "--task", "cola", "--out", "v.csv"])
    assert code == 0, capsys.readouterr().err
    voted = pd.read_csv("v.csv", dtype=str)
    assert len(voted) == 20 and set(voted["prediction"]) <= {"0", "1"}


def test_refusals_name_the_file(members, capsys):
    signal_origin = origin_path(members["signal"])
    signal_origin.write_text(json.dumps({"folds_sha256": "other"}), encoding="utf-8")
    code, _, err = fit(members, capsys)
    assert code == 2 and "different fold assignments" in err and "signal_oof.csv: other" in err
    signal_origin.write_text(json.dumps({"folds_sha256": "abc"}), encoding="utf-8")
    assert fit(members, capsys)[0] == 0
    apply = ["vote", "--ensemble", "submissions/cola/ensemble.json", "--task", "cola", "--out", "v.csv"]
    frame = pd.read_csv(members["noise"], dtype={"id": str})
    frame.to_csv(members["noise"], index=False, float_format="%.5f")  # the same member, written again
    assert voting_main(apply) == 2
    err = capsys.readouterr().err
    assert "member noise" in err and "noise_oof.csv changed since" in err
    code, _, err = fit(members, capsys)
    assert code == 0, err
    members["signal"].with_name("signal_cv.csv").unlink()
    assert voting_main(apply) == 2
    assert "member signal" in (err := capsys.readouterr().err) and "signal_cv.csv is missing" in err
    assert not Path("v.csv").exists()


def test_free_text_and_a_single_file_are_refused(members, capsys):
    code = voting_main(["ensemble", "fit", str(members["signal"]), "--task", "cola"])
    assert code == 2 and "at least two OOF files" in capsys.readouterr().err
    code = voting_main(["ensemble", "fit", *map(str, members.values()), "--task", "qa"])
    assert code == 2 and "free-text answers" in capsys.readouterr().err
