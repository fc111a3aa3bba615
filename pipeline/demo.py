"""`make demo`: the whole pipeline on the embedded sample, with SmolLM2-135M on the CPU.

data/samples/judge_*.csv (GB18030, the text-judging competition's layout)
  → data/judge_demo_*.json → saves/judge_demo/smollm2/lora → predictions/judge_demo/{smollm2,smollm2_score,tfidf}.csv
  → submissions/judge_demo/{voted.csv,submit.csv,report/}
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from core.paths import stage_dir

TASK = "judge_demo"
MODEL = "smollm2"
PY = sys.executable
# A few LoRA steps: enough to show the loss fall and to exercise every stage in minutes on 2 cores.
TRAIN_OVERRIDES = [
    "max_steps=12",
    "per_device_train_batch_size=4",
    "logging_steps=1",
    "save_steps=5",
    "learning_rate=5e-4",
    "warmup_ratio=0.0",
]
# Three voters: SmolLM2 generating, SmolLM2 label-scoring (never unparsed, so it breaks ties), TF-IDF + LR.
VOTERS = [f"predictions/{TASK}/{MODEL}.csv", f"predictions/{TASK}/{MODEL}_score.csv", f"predictions/{TASK}/tfidf.csv"]
TIE = f"{MODEL}_score"
# The judge task's own rules (选择题 rows take the tie-breaker's answer); a row no voter parses gets the middle score.
# A 12-step model's generations may not parse on many rows: they abstain (counted) instead of stopping the demo.
VOTE_OPTS = ["--task", TASK, "--tie-breaker", TIE, "--unparsed", "3", "--max-unparsed", "100%"]
STAGES = [
    (
        "data",
        [
            PY,
            "-m",
            "adapters",
            "judge",
            "--train",
            "data/samples/judge_train.csv",
            "--test",
            "data/samples/judge_test.csv",
            "--name",
            TASK,
            "--tokenizer",
            f"models/{MODEL}",  # the demo trains SmolLM2 (a judge task's default tokenizer would be Gemma 3's)
        ],
    ),
    ("train", [PY, "-m", "pipeline", "train", "--model", MODEL, "--task", TASK, *TRAIN_OVERRIDES]),
    ("predict", [PY, "-m", "pipeline", "predict", "--model", MODEL, "--task", TASK]),
    ("score", [PY, "-m", "pipeline.score", "--model", MODEL, "--task", TASK]),
    ("baseline", [PY, "-m", "pipeline.baseline", "--task", TASK]),
    ("vote", [PY, "-m", "voting", "vote", *VOTERS, *VOTE_OPTS, "--out", f"submissions/{TASK}/voted.csv"]),
    (
        "submit",
        [
            PY,
            "-m",
            "voting",
            "submit",
            "--task",
            TASK,
            "--pred",
            f"submissions/{TASK}/voted.csv",
            "--test",
            f"data/{TASK}_test.json",
            "--out",
            f"submissions/{TASK}/",
        ],
    ),
    (
        "report",
        [
            PY,
            "-m",
            "voting",
            "report",
            *VOTERS,
            *VOTE_OPTS,
            "--gold",
            f"data/{TASK}_test.json",
            "--out",
            f"submissions/{TASK}/report",
        ],
    ),
]


def main() -> int:
    start = time.perf_counter()
    previous = stage_dir(TASK, MODEL, "train").parent
    if previous.exists():
        print(f"[demo] removing the previous demo run {previous}", flush=True)
        shutil.rmtree(previous)
    for number, (name, command) in enumerate(STAGES, 1):
        t0 = time.perf_counter()
        print(f"\n[demo {number}/{len(STAGES)}] {name}: {' '.join(command[1:])}", flush=True)
        result = subprocess.run(command)
        if result.returncode != 0:
            print(f"[demo] stage {name} failed (exit {result.returncode})", file=sys.stderr)
            return result.returncode
        print(f"[demo {number}/{len(STAGES)}] {name} done in {time.perf_counter() - t0:.0f}s", flush=True)
    outputs = {
        "dataset": f"data/{TASK}_train.json, data/{TASK}_test.json (report: data/{TASK}_report.json)",
        "adapter": f"saves/{TASK}/{MODEL}/lora (run.yaml, manifest.json, training_loss.png)",
        "predictions": ", ".join(VOTERS),
        "submission": f"submissions/{TASK}/submit.csv (数据编号,评判维度,预测分数, GB18030)",
        "score report": f"submissions/{TASK}/report/",
    }
    print(f"\n[demo] finished in {time.perf_counter() - start:.0f}s")
    for what, where in outputs.items():
        print(f"  {what:13s} {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
