"""Bench: convert 200,000 generated judge rows with the project's adapter vs a naive pandas iterrows loop.

Run: `.venv/bin/python bench/conversion.py [--rows 200000] [--runs 3]`. Prints one JSON line: rows/s (wall and CPU)
and peak RSS of each way, each measured in its own fresh process (the project's fastest of --runs conversions, the
naive loop's single run); their speed ratio; and the project's RSS growth at a quarter of the rows too, to show
memory grows with the data and no faster. No tokenizer. On a shared machine read the ratio (and the load average
printed with it), not the absolute times.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = ["数据编号", "创作要求", "评判维度", "待评判内容", "标注分值"]
PHRASES = [
    "清晨的街道上行人不多，",
    "会议讨论了明年的预算安排，",
    "这本书我看了好几遍，",
    "雨下了一整夜，",
    "他把旧自行车修好以后，",
    "学校组织学生参观科技馆，",
    "的了在是和，",
    "产品质量提高了销售的，",
]


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """A GB18030 CSV in the competition's train layout: a third of each dimension, 1-3 sentence contents."""
    rng = random.Random(seed)
    with open(path, "w", encoding="gb18030", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for index in range(rows):
            dimension = ("流畅性", "规范性", "选择题")[index % 3]
            content = "".join(rng.choices(PHRASES, k=rng.randint(2, 8))) + "。"
            if dimension == "选择题":
                right, reply = rng.choice("ABCD"), rng.choice("ABCD")
                brief, content, score = (
                    "下列说法正确的是____ A、甲 B、乙 C、丙 D、丁",
                    f"正确选项为{right} 模型回复为{reply}",
                    int(right == reply),
                )
            else:
                brief = "" if dimension == "流畅性" else "请以“城市公共交通的发展”为主题写一篇文章"
                score = rng.randint(1, 5)
            writer.writerow([f"TR{index:07d}", brief, dimension, content, score])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_project(source: Path, out: Path) -> int:
    from adapters import ADAPTERS
    from adapters.writing import run_conversion

    report = run_conversion(ADAPTERS["judge"], {"train": source}, "bench", out, argparse.Namespace(), tokenizer="none")
    return report["datasets"]["bench_train"]["rows_out"]


def run_naive(source: Path, out: Path) -> int:
    """The obvious way: pandas read_csv, iterrows, one dict per row, json.dump with indent."""
    import pandas as pd

    frame = pd.read_csv(source, encoding="gb18030", dtype=str, keep_default_na=False)
    records = []
    for _, row in frame.iterrows():
        records.append(
            {
                "id": row["数据编号"],
                "instruction": f"给{row['评判维度']}打分",
                "input": f"{row['创作要求']}\n{row['待评判内容']}",
                "output": str(row["标注分值"]),
                "dimension": row["评判维度"],
            }
        )
    with open(out / "naive_train.json", "w", encoding="utf-8") as handle:
        json.dump(records, handle, ensure_ascii=False, indent=2)
    return len(records)


def worker(way: str, source: Path, out: Path, runs: int) -> None:
    """Convert `runs` times in this fresh process; report the fastest run and the process's peak RSS."""
    import pandas  # noqa: F401  (both ways pay the same import cost before the baseline)

    import adapters  # noqa: F401

    baseline = peak_rss_mb()
    best = None
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        rows = (run_project if way == "project" else run_naive)(source, out)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        best = min(best or (seconds, cpu), (seconds, cpu))
    seconds, cpu = best
    print(
        json.dumps(
            {
                "rows": rows,
                "runs": runs,
                "seconds": round(seconds, 3),
                "rows_per_s": round(rows / seconds),
                "cpu_rows_per_s": round(rows / cpu),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "rss_growth_mb": round(peak_rss_mb() - baseline, 1),
            }
        )
    )


def measure(way: str, source: Path, out: Path, runs: int) -> dict:
    command = [sys.executable, __file__, "--worker", way, str(source), str(out), str(runs)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="project conversions per measure; the fastest counts")
    parser.add_argument("--worker", nargs=4, metavar=("WAY", "SOURCE", "OUT", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), Path(args.worker[2]), int(args.worker[3]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        source, small, out = Path(tmp) / "train.csv", Path(tmp) / "quarter.csv", Path(tmp) / "data"
        generate(source, args.rows)
        generate(small, args.rows // 4)
        input_mb = source.stat().st_size / 2**20
        project = measure("project", source, out, args.runs)
        quarter = measure("project", small, out, 1)
        naive = measure("naive", source, out, 1)  # ~10 s a run: once is enough to see the ratio
    print(
        json.dumps(
            {
                "bench": "adapters.judge",
                "rows": args.rows,
                "input_mb": round(input_mb, 1),
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
                "project": project,
                "naive_pandas_iterrows": naive,
                "speed_ratio": round(project["rows_per_s"] / naive["rows_per_s"], 2),
                "cpu_speed_ratio": round(project["cpu_rows_per_s"] / naive["cpu_rows_per_s"], 2),
                "project_rss_growth_per_input_mb": round(project["rss_growth_mb"] / input_mb, 2),
                "project_rss_growth_mb_at_quarter_rows": quarter["rss_growth_mb"],
                "target_rows_per_s": 100_000,
                "meets_target": project["rows_per_s"] >= 100_000,
            }
        )
    )


if __name__ == "__main__":
    main()
