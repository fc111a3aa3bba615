"""Label scoring: candidate sets, calibration, and the scores themselves on a tiny LoRA run.

The tiny run trains a real adapter with `python -m pipeline train` (about a minute on 2 busy cores); scores are
checked against a naive one-sequence forward pass over the same LLaMA-Factory-encoded prompt.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import INSTRUCTION

from adapters import get_task
from adapters.logic import record_options
from core.tasks import TaskError
from pipeline.calibration import apply_calibration, fit_calibration, fit_label_bias
from pipeline.errors import RunError
from pipeline.label_scoring import label_sets, scoring_task
from pipeline.run import Run
from pipeline.score import main
from pipeline.scoring_engine import LabelScorer, score_encoded


@pytest.fixture(scope="module")
def scorer(tiny_lora: dict[str, Path]) -> LabelScorer:
    return LabelScorer(
        {
            "model_name_or_path": str(tiny_lora["model"]),
            "adapter_name_or_path": str(tiny_lora["adapter"]),
            "template": "smollm2",
            "default_system": "",
            "cutoff_len": 256,
            "finetuning_type": "lora",
            "infer_dtype": "float32",
        }
    )


def naive_log_likelihood(model, prompt: list[int], target: list[int]) -> float:
    """One unpadded sequence, full logits, no cache: the definition the fast paths must match."""
    import torch

    ids = torch.tensor([prompt + target])
    with torch.inference_mode():
        logp = model(input_ids=ids).logits[0].float().log_softmax(-1)
    return float(sum(logp[len(prompt) - 1 + j, token] for j, token in enumerate(target)))


# ---------------------------------------------------------------- candidate labels (no model)


def test_scoring_task_from_the_datasets_recorded_task(tmp_path):
    (tmp_path / "dataset_info.json").write_text(
        json.dumps(
            {
                "gk_train": {"file_name": "gk_train.json", "task": "qa"},
                "c_train": {"file_name": "c.json", "task": "cola"},
            }
        )
    )
    assert scoring_task(Run.resolve("c", data_dir=tmp_path)).labels == ("0", "1")  # no name rule: the recorded task
    assert scoring_task(Run.resolve("judge")).name == "judge"
    assert scoring_task(Run.resolve("whatever"), "a, b ,c").labels == ("a", "b", "c")
    with pytest.raises(RunError, match="free-text"):
        scoring_task(Run.resolve("gk", data_dir=tmp_path))  # qa: free text cannot be scored
    with pytest.raises(TaskError, match="unknown task 'mystery'"):
        scoring_task(Run.resolve("mystery", data_dir=tmp_path))


def test_candidates_per_row():
    judge = get_task("judge")
    assert judge.candidates({"dimension": "流畅性"}) == ("1", "2", "3", "4", "5")
    assert judge.candidates({"dimension": "选择题"}) == ("0", "1")
    with pytest.raises(TaskError, match="dimension"):
        judge.candidates({"id": "x", "dimension": "创意"})
    logic = get_task("logic")
    three = {"instruction": "选出正确选项", "input": "题目\n\n问题\nA: 甲\nB: 乙\nC: 丙"}
    assert logic.candidates(three) == ("A", "B", "C")
    assert record_options({"input": "no options here"}) == ("A", "B", "C", "D", "E")
    assert record_options({"input": "A: x\nC: y"}) == ("A", "B", "C", "D", "E")  # not consecutive: fall back


def test_outputs_outside_the_candidates_are_refused():
    records = [{"id": "r1", "output": "1"}, {"id": "r2", "output": "yes"}]
    with pytest.raises(RunError, match="r2.*'yes'"):
        label_sets(records, get_task("cola"), "cola_train")


# ---------------------------------------------------------------- calibration (no model)


def test_bias_matches_the_prior_after_collapse():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=400)
    # every row prefers "1" by a wide margin, but the margin still ranks the rows
    scores = np.stack([np.zeros(400), 3.0 + 0.2 * signal], axis=1)
    assert (scores.argmax(1) == 1).all()
    bias = fit_label_bias(scores, np.array([0.3, 0.7]))
    predicted = (scores + bias).argmax(1)
    assert abs((predicted == 0).sum() - 120) <= 1
    assert signal[predicted == 0].max() <= signal[predicted == 1].min()  # the lowest margins flip


def test_bias_three_labels():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(600, 3)) + np.array([2.0, 0.0, -1.0])
    prior = np.array([0.2, 0.5, 0.3])
    counts = np.bincount((scores + fit_label_bias(scores, prior)).argmax(1), minlength=3)
    assert np.abs(counts - prior * 600).max() <= 6


def test_calibration_per_dimension_never_sees_scored_rows():
    rng = np.random.default_rng(2)
    train = [
        {"id": f"{d}{i}", "dimension": d, "output": "1" if rng.random() < p else "0"}
        for d, p in (("x", 0.8), ("y", 0.2))
        for i in range(200)
    ]
    sets = [("0", "1")] * len(train)
    picked = list(range(0, 400, 2))
    fitted = fit_calibration(train, sets, picked, [rng.normal(size=2) for _ in picked], get_task("judge"))
    assert {g[0] for g in fitted} == {"x", "y"} and all(f["rows"] == 100 for f in fitted.values())
    scored = [{"id": f"s{i}", "dimension": d} for d in ("x", "y", "z") for i in range(300)]
    calibrated = apply_calibration(
        scored, [rng.normal(size=2) for _ in scored], [("0", "1")] * 900, fitted, get_task("judge")
    )
    share = [np.mean([c.argmax() == 1 for c in calibrated[k * 300 : (k + 1) * 300]]) for k in range(3)]
    assert share[0] > 0.65 and share[1] < 0.35 and 0.35 < share[2] < 0.65  # z: no group fitted, no bias
    assert all(abs(np.exp(c).sum() - 1) < 1e-9 for c in calibrated[600:])


# ---------------------------------------------------------------- the model


@pytest.mark.slow
def test_prompt_is_the_one_training_builds(scorer: LabelScorer, tiny_lora):
    """prompt + target ids == LLaMA-Factory's supervised processor on the same record (the gold label)."""
    from llamafactory.data.processor.supervised import SupervisedDatasetProcessor

    record = json.loads((tiny_lora["data"] / "cola_toy_test.json").read_text())[0]
    (encoded,) = scorer.encode([record], [("0", "1")])
    processor = SupervisedDatasetProcessor(scorer.template, scorer.tokenizer, None, scorer.data_args)
    example = scorer.messages(record)
    input_ids, labels = processor._encode_data_example(
        example["_prompt"], example["_response"], example["_system"], example["_tools"], [], [], []
    )
    gold = encoded.targets[encoded.labels.index(record["output"])]
    assert input_ids[: len(encoded.prompt) + len(gold)] == encoded.prompt + gold
    assert [t for t in labels if t >= 0][: len(gold)] == gold
    assert len(gold) == 1  # a digit is one token: the fast path


@pytest.mark.slow
def test_scores_equal_naive_forward(scorer: LabelScorer, tiny_lora):
    records = json.loads((tiny_lora["data"] / "cola_toy_test.json").read_text())[:6]
    cases = [("0", "1"), ("yes", "no", "perhaps"), ("1", "10", "2")]
    for labels in cases:
        encoded = scorer.encode(records, [labels] * len(records))
        scores = score_encoded(scorer.model, encoded, batch_size=4, pad_id=scorer.pad_id)
        for enc, s in zip(encoded, scores, strict=True):
            expected = [naive_log_likelihood(scorer.model, enc.prompt, t) for t in enc.targets]
            np.testing.assert_allclose(s, expected, rtol=1e-4, atol=1e-4, err_msg=str(labels))
    multi = scorer.encode(records[:1], [("yes", "no", "perhaps")])[0]
    assert max(map(len, multi.targets)) > 1, "the tiny tokenizer should split one of these words"
    prefixed = scorer.encode(records[:1], [("1", "10", "2")])[0]
    end = scorer.encode(records[:1], [("0", "1")])[0]
    assert all(len(t) > 1 for t in prefixed.targets)  # "1" is a prefix of "10": end tokens included
    assert all(len(t) == 1 for t in end.targets)


@pytest.mark.slow
def test_batching_and_paths_do_not_change_scores(scorer: LabelScorer, tiny_lora):
    records = json.loads((tiny_lora["data"] / "cola_toy_dev.json").read_text())
    for labels in (("0", "1"), ("yes", "no", "perhaps")):
        encoded = scorer.encode(records, [labels] * len(records))
        one = score_encoded(scorer.model, encoded, batch_size=1, pad_id=scorer.pad_id)
        sorted_batches = score_encoded(scorer.model, encoded, batch_size=5, pad_id=scorer.pad_id)
        no_cache = score_encoded(scorer.model, encoded, batch_size=5, pad_id=scorer.pad_id, share_prompt_cache=False)
        np.testing.assert_allclose(np.stack(one), np.stack(sorted_batches), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.stack(one), np.stack(no_cache), rtol=1e-4, atol=1e-4)
        stats: dict = {}
        no_prefix = score_encoded(
            scorer.model, encoded, batch_size=5, pad_id=scorer.pad_id, share_prefix=False, stats=stats
        )
        np.testing.assert_allclose(np.stack(one), np.stack(no_prefix), rtol=1e-4, atol=1e-4)
        shared: dict = {}
        score_encoded(scorer.model, encoded, batch_size=5, pad_id=scorer.pad_id, stats=shared)
        assert shared["prompt_positions"] < stats["prompt_positions"]  # the instruction ran once per batch


def test_no_rows_no_forward():
    assert score_encoded(None, []) == []


@pytest.mark.slow
def test_cli_writes_probabilities_raw_and_calibrated(tiny_lora, tmp_path, capsys):
    out = tmp_path / "predictions" / "tiny.csv"
    code = main(
        [
            "--model",
            "tiny",
            "--task",
            "cola_toy",
            "--split",
            "dev",
            "--batch-size",
            "4",
            "--calibrate",
            "--calibration-rows",
            "40",
            "--out",
            str(out),
            f"model_name_or_path={tiny_lora['model']}",
            f"dataset_dir={tiny_lora['data']}",
            f"adapter_name_or_path={tiny_lora['adapter']}",
            f"output_dir={tmp_path / 'saves' / 'predict'}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == [f"dev-{i}" for i in range(12)]
    assert list(rows[0]) == ["id", "prediction", "prob_0", "prob_1"]
    for row in rows:
        probs = {label: float(row[f"prob_{label}"]) for label in ("0", "1")}
        assert abs(sum(probs.values()) - 1) < 1e-5
        assert row["prediction"] == max(probs, key=probs.get)
    report = json.loads((tmp_path / "saves" / "score" / "report.json").read_text())
    assert report["calibration"]["sets"][0]["rows"] == 40
    assert {"raw", "calibrated"} <= set(report) and report["raw"]["metrics"]["n"] == 12
    with open(report["raw_predictions"], encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))
    assert [r["id"] for r in raw] == [r["id"] for r in rows]
    assert "calibrated: accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_refuses_a_missing_adapter(tiny_lora, tmp_path, capsys):
    code = main(
        [
            "--model",
            "tiny",
            "--task",
            "cola_toy",
            f"dataset_dir={tiny_lora['data']}",
            f"adapter_name_or_path={tmp_path / 'nothing'}",
            f"output_dir={tmp_path / 'predict'}",
        ]
    )
    assert code == 2 and "no adapter" in capsys.readouterr().err


@pytest.mark.smollm2
@pytest.mark.slow
def test_smollm2_single_token_fast_path(smollm2_dir):
    """Digits and letters are one SmolLM2 token each; scores match the naive forward on the base model."""
    scorer = LabelScorer(
        {
            "model_name_or_path": str(smollm2_dir),
            "template": "smollm2",
            "default_system": "",
            "cutoff_len": 512,
            "infer_dtype": "float32",
        }
    )
    records = [
        {"id": str(i), "instruction": INSTRUCTION, "input": text, "output": ""}
        for i, text in enumerate(["The cat sat on the mat.", "Cat the mat on sat.", "She said that."])
    ]
    import torch

    for labels in (("0", "1"), ("A", "B", "C", "D", "E")):
        encoded = scorer.encode(records, [labels] * 3)
        assert all(len(t) == 1 for e in encoded for t in e.targets)
        scores = score_encoded(scorer.model, encoded, batch_size=3, pad_id=scorer.pad_id)
        for enc, s in zip(encoded, scores, strict=True):
            with torch.inference_mode():  # one-token labels: the prompt's own last-position distribution
                logp = scorer.model(input_ids=torch.tensor([enc.prompt])).logits[0, -1].float().log_softmax(-1)
            np.testing.assert_allclose(s, [float(logp[t[0]]) for t in enc.targets], rtol=1e-4, atol=1e-4)
