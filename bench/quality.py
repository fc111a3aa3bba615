"""Bench: CoLA quality. A SmolLM2 LoRA trained on a stratified subset of in-domain train, scored on all 527 dev rows
by label scoring (raw, and calibrated on held-out train rows), by LLaMA-Factory's batched generation, against the
TF-IDF + LR baseline (full train) and the majority class. Accuracy and MCC; one JSON line.

Run: `.venv/bin/python bench/quality.py [--train-rows 1200] [--adapter PATH]` (long: training is most of it; the
adapter is kept in bench/results/cola_quality_lora_N and reused). Calibration never sees dev: it fits per-label
biases on `--calibration-rows` train rows the adapter was not trained on, to that held-out slice's label prior.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.predict import COLA, SMOLLM2, parsed_metrics, run_quiet  # noqa: E402
from pipeline.baseline import tfidf_predictions  # noqa: E402
from voting.score import label_metrics  # noqa: E402

TASK = "cola_quality"


def convert(data_dir: Path, train_rows: int) -> tuple[list[dict], list[dict], list[dict]]:
    """cola_quality_{train (the sample), dev, test (= dev)} and cola_quality_heldout (train rows not sampled)."""
    from adapters.__main__ import main as adapters_main

    train_tsv, dev_tsv = COLA / "in_domain_train.tsv", COLA / "in_domain_dev.tsv"
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for the JSON line
        assert adapters_main(["cola", "--train", str(train_tsv), "--name", "cola_full", "--data-dir", str(data_dir),
                              "--tokenizer", "none"]) == 0
        assert adapters_main(["cola", "--train", str(train_tsv), "--dev", str(dev_tsv), "--name", TASK,
                              "--data-dir", str(data_dir), "--max-train", str(train_rows), "--stratify",
                              "--tokenizer", "none"]) == 0
    load = lambda name: json.loads((data_dir / f"{name}.json").read_text(encoding="utf-8"))  # noqa: E731
    full, train, dev = load("cola_full_train"), load(f"{TASK}_train"), load(f"{TASK}_dev")
    used = {r["id"] for r in train}
    heldout = [r for r in full if r["id"] not in used]
    info = json.loads((data_dir / "dataset_info.json").read_text(encoding="utf-8"))
    for name, records in ((f"{TASK}_test", dev), (f"{TASK}_heldout", heldout)):
        (data_dir / f"{name}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        info[name] = {**info[f"{TASK}_dev"], "file_name": f"{name}.json"}
    (data_dir / "dataset_info.json").write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
    return full, train, dev


def command(stage: str, data_dir: Path, out_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", stage, "--model", "smollm2", "--task", TASK, "--data-dir", str(data_dir),
            f"model_name_or_path={SMOLLM2}", f"dataset_dir={data_dir}", f"output_dir={out_dir}", *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-rows", type=int, default=1200,
                        help="stratified train rows for the LoRA (1200: 150 steps, about 10 min on a quiet 2-core box)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--adapter", type=Path, help="an adapter trained on this subset (default: train one, kept)")
    parser.add_argument("--calibration-rows", type=int, default=512)
    parser.add_argument("--skip-generation", action="store_true", help="label scoring and baselines only")
    args = parser.parse_args()
    from pipeline.scoring import main as scoring_main

    result: dict = {"bench": "quality", "task": "CoLA in-domain dev", "train_rows": args.train_rows}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        full, train, dev = convert(data_dir, args.train_rows)
        gold = [r["output"] for r in dev]
        adapter = args.adapter or ROOT / "bench" / "results" / f"cola_quality_lora_{args.train_rows}"
        if not (adapter / "adapter_model.safetensors").is_file():
            seconds = run_quiet(command("train", data_dir, adapter, f"num_train_epochs={args.epochs}",
                                        "save_steps=100000", "plot_loss=false", "logging_steps=10"), work,
                                work / "train.log")
            result["train_s"] = round(seconds, 1)
        result["adapter"] = str(adapter)

        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = scoring_main(["--model", "smollm2", "--task", TASK, "--data-dir", str(data_dir), "--calibrate",
                                 "--calibrate-on", f"{TASK}_heldout", "--calibration-rows", str(args.calibration_rows),
                                 "--out", str(work / "scored.csv"), f"model_name_or_path={SMOLLM2}",
                                 f"adapter_name_or_path={adapter}", f"output_dir={work / 'predict'}"])
        assert code == 0, "label scoring failed"
        report = json.loads((work / "score" / "report.json").read_text(encoding="utf-8"))
        for kind in ("raw", "calibrated"):
            m = report[kind]["metrics"]
            result[f"scoring_{kind}"] = {"accuracy": round(m["accuracy"], 3), "mcc": round(m["mcc"], 3),
                                         "predicted": report[kind]["predicted"], "unparsed": 0}
        result["scoring_s"] = round(time.perf_counter() - start, 1)
        result["calibration"] = report["calibration"]

        if not args.skip_generation:
            out_dir = work / "generate"
            seconds = run_quiet(command("predict", data_dir, out_dir, f"adapter_name_or_path={adapter}"), work,
                                work / "predict.log")
            with (work / "predictions" / TASK / "smollm2.csv").open(encoding="utf-8", newline="") as handle:
                texts = [row["prediction"] for row in csv.DictReader(handle)]
            result["generation"] = {**parsed_metrics(dev, texts), "predicted": dict(Counter(texts).most_common(5))}
            result["generation_s"] = round(seconds, 1)

        tfidf = tfidf_predictions(full, dev)
        m = label_metrics(gold, [row["prediction"] for row in tfidf])
        result["tfidf_full_train"] = {"accuracy": round(m["accuracy"], 3), "mcc": round(m["mcc"], 3)}
        majority = Counter(r["output"] for r in train).most_common(1)[0][0]
        m = label_metrics(gold, [majority] * len(gold))
        result["majority"] = {"label": majority, "accuracy": round(m["accuracy"], 3), "mcc": round(m["mcc"], 3)}
    result["load_avg"] = round(os.getloadavg()[0], 2)
    result["command"] = "python bench/quality.py " + " ".join(sys.argv[1:])
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
