"""The sweep's best trial against the preset's own settings, on rows neither was chosen on (issue #25): both
adapters label-scored on the same held-out split (CoLA: the in_domain_dev rows after the 150 the sweep scored), the
same way the sweep judged its trials (calibrated on the same train rows where `--calibration-rows` is given), then
the task's metric of each with its bootstrap 95% interval and the paired interval of the difference.

    make data TASK=cola DATA_DIR=data/bench_sweep TRAIN=.../in_domain_train.tsv DEV=.../in_domain_dev.tsv \\
        TEST=dev_after150.tsv DATA_ARGS="--max-train 480 --stratify --first-dev 150"
    make sweep MODEL=smollm2 TASK=cola DATA_DIR=data/bench_sweep TRIALS=8 CALIBRATE=128
    make train MODEL=smollm2 TASK=cola DATA_DIR=data/bench_sweep                # the preset → saves/cola/smollm2/lora
    .venv/bin/python bench/sweep_best.py --task cola --model smollm2 --data-dir data/bench_sweep --calibration-rows 128

Prints one JSON line (the study's trials, each adapter's figures, the paired difference).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.paths import stage_dir
from core.tasks import get_task
from pipeline import label_scoring
from pipeline.run import Run
from pipeline.select import ScoringOptions, scoring_args
from voting.fit import Context, bootstrap, score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--split", default="test", help="the held-out labelled split (default test)")
    parser.add_argument("--calibration-rows", type=int, default=0, help="as the sweep's CALIBRATE= (default 0: raw)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import optuna

    sweep_dir = stage_dir(args.task, args.model, "sweep")
    study = optuna.load_study(study_name=f"{args.task}-{args.model}", storage=f"sqlite:///{sweep_dir / 'study.db'}")
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params, **t.user_attrs}
        for t in study.get_trials(deepcopy=False)
    ]
    best = study.best_trial
    adapters = {"preset": stage_dir(args.task, args.model, "train"), "best": sweep_dir / best.user_attrs["folder"]}
    out_dir = Path("bench/results/sweep_best")
    how = ScoringOptions(16, args.calibration_rows)
    run = Run.resolve(args.task, args.model, args.data_dir, split=args.split)
    frames, seconds = {}, {}
    for name, adapter in adapters.items():
        started = time.perf_counter()
        label_scoring.score_split(
            run.with_overrides(f"adapter_name_or_path={adapter}", f"output_dir={out_dir / name}"),
            scoring_args(run, out_dir / f"{name}.csv", how),
            report_json=out_dir / f"{name}.json",
        )
        seconds[name] = round(time.perf_counter() - started, 1)
        frames[name] = pd.read_csv(out_dir / f"{name}.csv", dtype=str, keep_default_na=False).set_index("id")
    gold = {str(r["id"]): r["output"] for r in json.loads(run.data_file().read_text(encoding="utf-8"))}
    ids = list(gold)
    spec = run.spec or get_task(args.task)
    labels = list(spec.labels or sorted(set(gold.values())))
    ctx = Context(list(adapters), labels, spec.metric)
    y = np.array([labels.index(gold[i]) for i in ids])
    codes = {name: np.array([labels.index(frames[name].loc[i, "prediction"]) for i in ids]) for name in adapters}
    figures = bootstrap(codes, y, ctx, args.seed)["methods"]
    rng = np.random.default_rng(args.seed)
    differences = []
    for _ in range(1000):  # paired: the same resampled rows for both adapters
        pick = rng.integers(0, len(y), len(y))
        differences.append(score(y[pick], codes["best"][pick], ctx) - score(y[pick], codes["preset"][pick], ctx))
    print(
        json.dumps(
            {
                "bench": "sweep_best",
                "task": args.task,
                "model": args.model,
                "split": args.split,
                "rows": len(ids),
                "metric": spec.metric,
                "calibration_rows": args.calibration_rows,
                "best_trial": {"number": best.number, "dev_value": best.value, "params": best.params},
                **{name: {"metric": figures[name]["metric"], "ci95": figures[name]["ci95"]} for name in adapters},
                "best_minus_preset": round(figures["best"]["metric"] - figures["preset"]["metric"], 4),
                "best_minus_preset_ci95": np.percentile(differences, [2.5, 97.5]).round(4).tolist(),
                "trials": trials,
                "scoring_seconds": seconds,
            },
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
