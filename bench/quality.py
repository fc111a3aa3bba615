"""Bench: held-out quality of an embedded model (`--model smollm2|gemma3`, `tiny` for smoke runs), LoRA-tuned or
zero-shot (`--base`), against baselines that need no model; one JSON line.

- `--task cola`: the LoRA trains on a stratified subset of CoLA in-domain train and scores all 527 dev rows by label
  scoring (raw, and calibrated on held-out train rows) and by LLaMA-Factory's batched generation. Accuracy and MCC.
- `--task judge`: DataFountain 1032 fluency. 200 rows of train_fluency_1200.csv are held out (stratified, seed 0),
  the LoRA trains on a stratified `--train-rows` of the other 1000 (`--max-per-label N`: at most N per score, balanced
  sampling) and scores the 200. Accuracy and MAE (scores 1–5); the majority is score 3. The baselines train on all
  1000. There are no spare labelled rows, so calibration fits on a slice of the 1000 (never the 200).
- `--task logic`: 逻辑推理 round1_train_data.jsonl. `--test-rows` (50) problems are held out (seed 0, whole problems:
  about 140 questions), the LoRA trains on the others' questions (`--train-rows` caps them, whole problems).
  Label scoring over each question's own option letters, raw and calibrated (on the problems the cap left out, else
  on a train slice); accuracy against chance (mean 1/options) and the training majority letter.
- `--task qa`: 公考 QA pairs (gongkao output.jsonl), repeated questions dropped, `--test-rows` (200) held out (seed
  0). Generation only: exact match, char F1, ROUGE-L and BLEU-4 as LLaMA-Factory computes them, against retrieval
  (the answer of the nearest training question, TF-IDF character n-grams).
- `--task keywords`: iFLYTEK A-board test.csv (it has Keywords), `--test-rows` (200) papers held out (seed 0).
  Generation only: keyword P/R/F1, against `pipeline.baseline.tfidf_keywords` (top k by TF-IDF).
The logic, qa and keywords splits and their baselines are in bench/quality_tasks.py; the task is skipped, with a
message, where its file is absent.

Run: `.venv/bin/python bench/quality.py [--task cola|judge|logic|qa|keywords] [--model gemma3] [--base]
[--train-rows N] [--test-rows N] [--cutoff-len N] [--adapter PATH] [--set key=value ...]` (long: training is most
of it; the adapter is kept in bench/results/TASK_quality[_MODEL]_lora_N[_SETTINGS] and reused). `--set` overrides
the presets (train, scoring and generation alike), e.g. `--set template=default` or `--set lora_rank=8
learning_rate=1e-4`.
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
from quality_tasks import CONVERTERS, SOURCES, adapters, load, logic_baselines, nearest_answers

from adapters import get_task
from core.metrics import free_text_metrics, label_metrics
from pipeline.baseline import tfidf_keywords, tfidf_predictions

ROOT = Path(__file__).resolve().parents[1]
DF1032 = COLA.parent / "df1032"
METRICS = {
    "cola": ("accuracy", "mcc"),
    "judge": ("accuracy", "mae", "macro_f1"),
    "logic": ("accuracy",),
    "qa": ("exact_match", "char_f1", "rouge_l", "bleu_4"),
    "keywords": ("keyword_precision", "keyword_recall", "keyword_f1", "keyword_macro_f1"),
}
TEXT_TASKS = ("qa", "keywords")  # generation only: free-text answers, no label set to score
TEST_ROWS = {"judge": 200, "logic": 50, "qa": 200, "keywords": 200}  # logic: problems


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
    parser.add_argument("--task", choices=tuple(METRICS), default="cola")
    parser.add_argument(
        "--model", choices=("smollm2", "gemma3", "tiny"), default="smollm2", help="the embedded model (tiny: smoke)"
    )
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
        help="stratified train rows for the LoRA (cola: default 1200 = 150 steps, about 10 min on a quiet 2-core "
        "box); judge: a stratified cap on the 1000 rows not held out (the baselines always see all 1000); logic "
        "(questions, whole problems), qa, keywords: a cap on the training rows (default: all)",
    )
    parser.add_argument(
        "--test-rows", type=int, help="rows held out and scored: judge, qa, keywords 200; logic: 50 problems"
    )
    parser.add_argument(
        "--cutoff-len",
        type=int,
        help="cutoff_len for training and scoring (default: the preset's, 512; tiny 256, too short for keywords: "
        "give 1024); judge essays are ~1700 SmolLM2 tokens, logic prompts 341 (p50) to 1399, so this is the cost",
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
    source = SOURCES.get(args.task)
    if source is not None and not source.is_file():
        print(f"skipped: --task {args.task} needs {source}, which is absent", file=sys.stderr)
        return
    task = f"{args.task}_quality"
    cutoff = [f"cutoff_len={args.cutoff_len}"] if args.cutoff_len else []
    cutoff += args.set
    model, model_dir = args.model, ROOT / "models" / args.model
    keys = METRICS[args.task]
    test_rows = args.test_rows or TEST_ROWS.get(args.task)
    result: dict = {"bench": "quality", "task": args.task, "model": model, "overrides": args.set}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        preset_cutoff = preset_cutoff_len(model)
        if args.task == "cola":
            train_rows = args.train_rows or 1200
            result.update(scored="CoLA in-domain dev (527)", train_rows=train_rows)
            baseline_train, scored, calibrate_on = convert_cola(data_dir, task, train_rows)
            tag = str(train_rows)
        elif args.task == "judge":
            baseline_train, scored, calibrate_on, lora_rows = convert_judge(
                data_dir,
                task,
                test_rows,
                args.cutoff_len or preset_cutoff,
                model_dir,
                args.train_rows or 1000,
                args.max_per_label,
            )
            result.update(
                scored=f"train_fluency_1200 held-out {len(scored)} (stratified, seed 0)",
                train_rows=lora_rows,
                baseline_train_rows=len(baseline_train),
            )
            tag = f"{lora_rows}_cut{args.cutoff_len or 'preset'}" + (
                f"_bal{args.max_per_label}" if args.max_per_label else ""
            )
        else:
            tokenizer = ["--tokenizer", str(model_dir), "--cutoff-len", str(args.cutoff_len or preset_cutoff)]
            split = CONVERTERS[args.task](work, data_dir, task, test_rows, args.train_rows, tokenizer)
            task, baseline_train, scored, calibrate_on = split.task, split.train, split.test, split.calibrate_on
            result.update(scored=split.notes.pop("held_out"), train_rows=len(baseline_train), **split.notes)
            tag = f"{len(baseline_train)}_test{test_rows}_cut{args.cutoff_len or 'preset'}"
        result["cutoff_len"] = args.cutoff_len or f"preset ({preset_cutoff})"
        gold = [r["output"] for r in scored]
        tag = "_".join([tag, *(s.replace("=", "") for s in args.set)])
        run_name = task if model == "smollm2" else f"{task}_{model}"  # smollm2 keeps its earlier adapters' names
        adapter = (
            args.adapter or ROOT / "bench" / "results" / f"{run_name}_lora_{tag}"
        ).resolve()  # stages run in work
        if args.base:
            adapter = Path("")
            args.skip_generation = args.skip_generation or args.task not in TEXT_TASKS
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
        adapter_arg = f"adapter_name_or_path={adapter if not args.base else ''}"

        if args.task not in TEXT_TASKS:
            result.update(label_scoring(args, task, gold, data_dir, work, calibrate_on, adapter_arg, cutoff))
        if args.task in TEXT_TASKS or not args.skip_generation:
            seconds = run_quiet(
                command("predict", model, task, data_dir, work / "generate", adapter_arg, *cutoff),
                work,
                work / "predict.log",
            )
            by_id = {row["id"]: row["prediction"] for row in read_rows(work / "predictions" / task / f"{model}.csv")}
            texts = [by_id[r["id"]] for r in scored]
            if args.task in TEXT_TASKS:
                m = free_text_metrics(gold, texts, get_task(args.task).text_metrics)
                result["generation"] = {
                    **rounded(m, keys),
                    "examples": [{"gold": g, "generated": t} for g, t in zip(gold[:3], texts[:3], strict=True)],
                }
            else:
                result["generation"] = {
                    **parsed_metrics(scored, texts, args.task, keys),
                    "predicted": dict(Counter(texts).most_common(5)),
                }
            result["generation_s"] = round(seconds, 1)
        result.update(baselines(args.task, baseline_train, scored, keys))
    result["load_avg"] = round(os.getloadavg()[0], 2)
    result["command"] = "python bench/quality.py " + " ".join(sys.argv[1:])
    print(json.dumps(result, ensure_ascii=False))


def preset_cutoff_len(model: str) -> int:
    import yaml

    from pipeline.presets import preset_path

    return int(yaml.safe_load(preset_path(model, "train").read_text(encoding="utf-8"))["cutoff_len"])


def label_scoring(
    args: argparse.Namespace,
    task: str,
    gold: list[str],
    data_dir: Path,
    work: Path,
    calibrate_on: str,
    adapter_arg: str,
    cutoff: list[str],
) -> dict:
    """pipeline.label_scoring on TASK_test (raw and calibrated on `calibrate_on`): the JSON line's scoring_* keys."""
    from pipeline.score import main as scoring_main

    keys, result = METRICS[args.task], {}
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = scoring_main(
            [
                "--model",
                args.model,
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
                f"model_name_or_path={ROOT / 'models' / args.model}",
                adapter_arg,
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
    return result


def baselines(task: str, train: list[dict], scored: list[dict], keys: tuple[str, ...]) -> dict:
    """The no-model floors: TF-IDF + LR and the majority (cola, judge), chance and the majority letter (logic),
    retrieval (qa), TF-IDF top-k keywords (keywords)."""
    gold = [r["output"] for r in scored]
    if task == "logic":
        return logic_baselines(train, scored)
    if task == "qa":
        return {"retrieval": rounded(free_text_metrics(gold, nearest_answers(train, scored), "qa"), keys)}
    if task == "keywords":
        rows = tfidf_keywords(train, scored)
        return {"tfidf_keywords": rounded(free_text_metrics(gold, [r["prediction"] for r in rows], "keywords"), keys)}
    m = label_metrics(gold, [row["prediction"] for row in tfidf_predictions(train, scored, group_col="dimension")])
    majority = Counter(r["output"] for r in train).most_common(1)[0][0]
    return {
        "tfidf": rounded(m, keys),
        "majority": {"label": majority, **rounded(label_metrics(gold, [majority] * len(gold)), keys)},
    }


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
