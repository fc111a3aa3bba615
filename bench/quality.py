"""Bench: prediction quality of an embedded model's LoRA (`--model smollm2|gemma3`) against the TF-IDF + LR baseline and the majority class; one JSON line.

- `--task cola`: the LoRA trains on a stratified subset of CoLA in-domain train and scores all 527 dev rows by label
  scoring (raw, and calibrated on held-out train rows) and by LLaMA-Factory's batched generation. Accuracy and MCC.
- `--task judge`: DataFountain 1032 fluency. 200 rows of train_fluency_1200.csv are held out (stratified, seed 0),
  the LoRA trains on a stratified `--train-rows` of the other 1000 (`--max-per-label N`: at most N per score, balanced
  sampling) and scores the 200. Accuracy and MAE (scores 1–5); the majority is score 3. The baselines train on all
  1000. There are no spare labelled rows, so calibration fits on a slice of the 1000 (never the 200).

Run: `.venv/bin/python bench/quality.py [--task cola|judge] [--model gemma3] [--train-rows N] [--cutoff-len N]
[--adapter PATH] [--set key=value ...]` (long: training is most of it; the adapter is kept in
bench/results/TASK_quality[_MODEL]_lora_N[_SETTINGS] and reused). `--set` overrides the presets (train, scoring and
generation alike), e.g. `--set template=default` or `--set lora_rank=8 learning_rate=1e-4`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from predict import COLA, parsed_metrics, rounded, run_quiet

from core.metrics import label_metrics
from pipeline.baseline import tfidf_predictions

ROOT = Path(__file__).resolve().parents[1]
DF1032 = COLA.parent / "df1032"
METRICS = {"cola": ("accuracy", "mcc"), "judge": ("accuracy", "mae", "macro_f1")}


def adapters(*argv: str) -> None:
    from adapters.__main__ import main as adapters_main

    tokenizer = [] if "--tokenizer" in argv else ["--tokenizer", "none"]
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for the JSON line
        assert adapters_main([*argv, *tokenizer]) == 0, f"adapters {argv[0]} failed"


def load(data_dir: Path, name: str) -> list[dict]:
    return json.loads((data_dir / f"{name}.json").read_text(encoding="utf-8"))


def register(data_dir: Path, like: str, datasets: dict[str, list[dict]]) -> None:
    """Write each dataset's records and register it with the same columns as the registered dataset `like`."""
    info = json.loads((data_dir / "dataset_info.json").read_text(encoding="utf-8"))
    for name, records in datasets.items():
        (data_dir / f"{name}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        info[name] = {**info[like], "file_name": f"{name}.json"}
    (data_dir / "dataset_info.json").write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")


def convert_cola(data_dir: Path, task: str, train_rows: int) -> tuple[list[dict], list[dict], str]:
    """TASK_{train (the stratified sample), dev, test (= dev), heldout (train rows not sampled)}; returns the full
    train (for TF-IDF), the scored rows and the calibration dataset."""
    train_tsv, dev_tsv = COLA / "in_domain_train.tsv", COLA / "in_domain_dev.tsv"
    adapters("cola", "--train", str(train_tsv), "--name", "cola_full", "--data-dir", str(data_dir))
    adapters(
        "cola",
        "--train",
        str(train_tsv),
        "--dev",
        str(dev_tsv),
        "--name",
        task,
        "--data-dir",
        str(data_dir),
        "--max-train",
        str(train_rows),
        "--stratify",
    )
    full, train, dev = load(data_dir, "cola_full_train"), load(data_dir, f"{task}_train"), load(data_dir, f"{task}_dev")
    used = {r["id"] for r in train}
    register(
        data_dir, f"{task}_dev", {f"{task}_test": dev, f"{task}_heldout": [r for r in full if r["id"] not in used]}
    )
    return full, dev, f"{task}_heldout"


def convert_judge(
    data_dir: Path,
    task: str,
    test_rows: int,
    cutoff_len: int,
    model_dir: Path,
    train_rows: int,
    max_per_label: int | None = None,
) -> tuple[list[dict], list[dict], str, int]:
    """TASK_all (1200 minus `test_rows` held out, stratified, seed 0: the baselines' train and the calibration rows),
    TASK_train (the LoRA's: a stratified `train_rows` of it, then at most `max_per_label` per score) and TASK_test
    (the held-out rows), essays trimmed to fit `cutoff_len` (`--fit-cutoff`: LLaMA-Factory would cut the assistant
    header off instead). Returns (TASK_all, TASK_test, the calibration dataset, the LoRA's rows)."""
    from adapters.records import sample

    adapters(
        "judge",
        "--train",
        str(DF1032 / "train_fluency_1200.csv"),
        "--name",
        "judge_full",
        "--data-dir",
        str(data_dir),
        "--tokenizer",
        str(model_dir),
        "--cutoff-len",
        str(cutoff_len),
        "--fit-cutoff",
    )
    full = load(data_dir, "judge_full_train")
    test = sample(full, test_rows, seed=0, stratify=True)
    held = {r["id"] for r in test}
    train_all = [r for r in full if r["id"] not in held]
    train = sample(train_all, train_rows, seed=0, stratify=True)
    if max_per_label:
        from adapters.records import cap_per_label

        train = cap_per_label(train, max_per_label)
    register(data_dir, "judge_full_train", {f"{task}_train": train, f"{task}_test": test, f"{task}_all": train_all})
    return train_all, test, f"{task}_all", len(train)


def command(stage: str, model: str, task: str, data_dir: Path, out_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline",
        stage,
        "--model",
        model,
        "--task",
        task,
        "--data-dir",
        str(data_dir),
        f"model_name_or_path={ROOT / 'models' / model}",
        f"dataset_dir={data_dir}",
        f"output_dir={out_dir}",
        *extra,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("cola", "judge"), default="cola")
    parser.add_argument("--model", choices=("smollm2", "gemma3"), default="smollm2", help="the embedded model")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="LLaMA-Factory overrides for training, scoring and generation (template=default ...)",
    )
    parser.add_argument(
        "--train-rows",
        type=int,
        default=1200,
        help="stratified train rows for the LoRA (cola: 1200 = 150 steps, about 10 min on a quiet 2-core "
        "box; judge: at most the 1000 rows not held out; the baselines always see all of them)",
    )
    parser.add_argument("--test-rows", type=int, default=200, help="judge: rows held out and scored (200)")
    parser.add_argument(
        "--cutoff-len",
        type=int,
        help="cutoff_len for training and scoring (default: the preset's, "
        "512); judge essays are ~1700 SmolLM2 tokens, so this is the cost",
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument(
        "--max-per-label",
        type=int,
        help="judge: train on at most N rows per score (balanced sampling, as `adapters --max-per-label`)",
    )
    parser.add_argument("--adapter", type=Path, help="an adapter trained on this subset (default: train one, kept)")
    parser.add_argument("--base", action="store_true", help="zero-shot: score the base model, no LoRA (no training)")
    parser.add_argument("--calibration-rows", type=int, default=512)
    parser.add_argument("--skip-generation", action="store_true", help="label scoring and baselines only")
    args = parser.parse_args()
    from pipeline.label_scoring import main as scoring_main

    task = f"{args.task}_quality"
    cutoff = [f"cutoff_len={args.cutoff_len}"] if args.cutoff_len else []
    cutoff += args.set
    model, model_dir = args.model, ROOT / "models" / args.model
    keys = METRICS[args.task]
    result: dict = {"bench": "quality", "task": args.task, "model": model, "overrides": args.set}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        if args.task == "cola":
            result.update(scored="CoLA in-domain dev (527)", train_rows=args.train_rows)
            baseline_train, scored, calibrate_on = convert_cola(data_dir, task, args.train_rows)
            tag = str(args.train_rows)
        else:
            baseline_train, scored, calibrate_on, lora_rows = convert_judge(
                data_dir, task, args.test_rows, args.cutoff_len or 512, model_dir, args.train_rows, args.max_per_label
            )
            result.update(
                scored=f"train_fluency_1200 held-out {len(scored)} (stratified, seed 0)",
                train_rows=lora_rows,
                baseline_train_rows=len(baseline_train),
            )
            tag = f"{lora_rows}_cut{args.cutoff_len or 'preset'}" + (
                f"_bal{args.max_per_label}" if args.max_per_label else ""
            )
        result["cutoff_len"] = args.cutoff_len or "preset (512)"
        gold = [r["output"] for r in scored]
        tag = "_".join([tag, *(s.replace("=", "") for s in args.set)])
        run_name = task if model == "smollm2" else f"{task}_{model}"  # smollm2 keeps its earlier adapters' names
        adapter = (
            args.adapter or ROOT / "bench" / "results" / f"{run_name}_lora_{tag}"
        ).resolve()  # stages run in work
        if args.base:
            adapter, args.skip_generation = Path(""), True
        elif not (adapter / "adapter_model.safetensors").is_file():
            seconds = run_quiet(
                command(
                    "train",
                    model,
                    task,
                    data_dir,
                    adapter,
                    f"num_train_epochs={args.epochs}",
                    "save_steps=100000",
                    "plot_loss=false",
                    "logging_steps=10",
                    *cutoff,
                ),
                work,
                work / "train.log",
            )
            result["train_s"] = round(seconds, 1)
        result["adapter"] = str(adapter) if not args.base else "none (zero-shot base model)"

        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = scoring_main(
                [
                    "--model",
                    model,
                    "--task",
                    task,
                    "--data-dir",
                    str(data_dir),
                    "--calibrate",
                    "--calibrate-on",
                    calibrate_on,
                    "--calibration-rows",
                    str(args.calibration_rows),
                    "--out",
                    str(work / "scored.csv"),
                    f"model_name_or_path={model_dir}",
                    f"adapter_name_or_path={adapter if not args.base else ''}",
                    f"output_dir={work / 'predict'}",
                    *cutoff,
                ]
            )
        assert code == 0, "label scoring failed"
        report = json.loads((work / "score" / "report.json").read_text(encoding="utf-8"))
        for kind, path in (("raw", report["raw_predictions"]), ("calibrated", report["predictions"])):
            result[f"scoring_{kind}"] = {
                **rounded(report[kind]["metrics"], keys),
                "predicted": report[kind]["predicted"],
                "unparsed": 0,
            }
            if args.task == "judge":  # ordinal scores: the median of each row's distribution minimises expected MAE
                rows = read_rows(Path(path))
                medians = [median_label(row) for row in rows]
                m = label_metrics(gold, medians)
                result[f"scoring_{kind}_median"] = {**rounded(m, keys), "predicted": dict(Counter(medians))}
                result[f"scoring_{kind}"]["spearman_expected_score"] = round(spearman(gold, rows), 3)
        result["scoring_s"] = round(time.perf_counter() - start, 1)
        result["prompt_tokens_per_row"] = report["prompt_tokens_per_row"]
        result["calibration"] = report["calibration"]

        if not args.skip_generation:
            seconds = run_quiet(
                command(
                    "predict", model, task, data_dir, work / "generate", f"adapter_name_or_path={adapter}", *cutoff
                ),
                work,
                work / "predict.log",
            )
            texts = [row["prediction"] for row in read_rows(work / "predictions" / task / f"{model}.csv")]
            result["generation"] = {
                **parsed_metrics(scored, texts, args.task, keys),
                "predicted": dict(Counter(texts).most_common(5)),
            }
            result["generation_s"] = round(seconds, 1)

        m = label_metrics(
            gold, [row["prediction"] for row in tfidf_predictions(baseline_train, scored, group_col="dimension")]
        )
        result["tfidf"] = rounded(m, keys)
        majority = Counter(r["output"] for r in baseline_train).most_common(1)[0][0]
        result["majority"] = {"label": majority, **rounded(label_metrics(gold, [majority] * len(gold)), keys)}
    result["load_avg"] = round(os.getloadavg()[0], 2)
    result["command"] = "python bench/quality.py " + " ".join(sys.argv[1:])
    print(json.dumps(result, ensure_ascii=False))


def label_probs(row: dict) -> list[tuple[float, str, float]]:
    """(numeric value, label, probability) of a scored row's prob_<label> columns, by value."""
    return sorted(
        (float(key[len("prob_") :]), key[len("prob_") :], float(p)) for key, p in row.items() if key.startswith("prob_")
    )


def median_label(row: dict) -> str:
    """The smallest numeric label whose cumulative probability reaches one half."""
    probs = label_probs(row)
    total, cumulative = sum(p for _, _, p in probs), 0.0
    for _, label, p in probs:
        cumulative += p
        if cumulative >= total / 2:
            return label
    return probs[-1][1]


def spearman(gold: list[str], rows: list[dict]) -> float:
    """Rank correlation of the gold scores with each row's expected score: is there any signal to calibrate?"""
    from scipy.stats import spearmanr

    expected = [sum(value * p for value, _, p in label_probs(row)) for row in rows]
    return float(spearmanr([float(g) for g in gold], expected).statistic)


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


if __name__ == "__main__":
    main()
