"""The classic floor: TF-IDF + logistic regression trained on an adapter's train records.

`python -m pipeline.baseline --task TASK` reads data/TASK_train.json and data/TASK_test.json and writes
predictions/TASK/tfidf.csv (id,prediction,prob_<label>...), the same format the models write, so it can vote.
Word 1–2-grams for space-separated text (English: CoLA, QQP), character 1–3-grams otherwise (Chinese has no
spaces to split on). Measured on CoLA dev: word 1–2-grams accuracy 0.702 / MCC 0.138, char 1–3-grams 0.674 / 0.065.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.fileio import atomic_write_csv


def record_text(record: dict) -> str:
    return f"{record.get('instruction', '')}\n{record.get('input', '')}"


def group_of(record: dict) -> str:
    # One classifier per judging dimension: 1–5 scores and 0/1 choices are different label sets.
    return record.get("dimension", "")


def text_vectorizer(texts: list[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    sample = "".join(texts[:200])
    spaced = sample.count(" ") > 0.05 * max(len(sample), 1)
    if spaced:
        return TfidfVectorizer(ngram_range=(1, 2))
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)


def tfidf_predictions(train: list[dict], test: list[dict], seed: int = 0) -> list[dict]:
    """Fit one TF-IDF + LR model per group on train; return [{id, prediction, prob_<label>...}] in test order."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rows: dict[str, dict] = {}
    labels_all = sorted({r["output"] for r in train}, key=lambda x: (len(x), x))
    for group in sorted({group_of(r) for r in test}):
        fit_on = [r for r in train if group_of(r) == group and r["output"] != ""]
        todo = [r for r in test if group_of(r) == group]
        classes = sorted({r["output"] for r in fit_on})
        if not fit_on:
            raise SystemExit(f"baseline: no labelled train records for group {group!r}")
        if len(classes) == 1:  # nothing to learn: the only label seen
            for r in todo:
                rows[r["id"]] = {"prediction": classes[0], **{f"prob_{c}": float(c == classes[0]) for c in labels_all}}
            continue
        model = make_pipeline(text_vectorizer([r.get("input", "") for r in fit_on]),
                              LogisticRegression(max_iter=2000, C=4.0 if group else 1.0, random_state=seed))
        model.fit([record_text(r) for r in fit_on], [r["output"] for r in fit_on])
        probs = model.predict_proba([record_text(r) for r in todo])
        for r, p in zip(todo, probs, strict=True):
            by_label = dict(zip(model.classes_, p, strict=True))
            rows[r["id"]] = {"prediction": max(by_label, key=by_label.get),
                             **{f"prob_{c}": round(float(by_label.get(c, 0.0)), 6) for c in labels_all}}
    return [{"id": r["id"], **rows[r["id"]], **({"dimension": r["dimension"]} if "dimension" in r else {})}
            for r in test]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="dataset prefix: reads DATA/TASK_train.json, DATA/TASK_test.json")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--test-split", default="test", help="score this split instead (e.g. dev)")
    parser.add_argument("--out", type=Path, help="default predictions/TASK/tfidf.csv")
    args = parser.parse_args(argv)
    paths = [args.data_dir / f"{args.task}_{split}.json" for split in ("train", args.test_split)]
    for path in paths:
        if not path.is_file():
            print(f"error: {path} not found: convert the data first (python -m adapters ...)", file=sys.stderr)
            return 2
    train, test = (json.loads(p.read_text(encoding="utf-8")) for p in paths)
    out = args.out or Path("predictions") / args.task / "tfidf.csv"
    atomic_write_csv(out, tfidf_predictions(train, test))
    print(f"[baseline] TF-IDF + LR on {len(train)} train records → {len(test)} predictions in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
