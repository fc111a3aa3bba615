"""Training speed of `make train MODEL=smollm2` against the machine's bound, and which LLaMA-Factory settings move it.

Same data (CoLA train rows from ../shared/data, else generated sentences), same steps, in one run:
the preset as shipped, then one setting changed at a time (gradient checkpointing on, packing, batch size).
Tokens/s come from LLaMA-Factory's own `num_input_tokens_seen` / `train_runtime`; the bound is the CPU's
measured fp32 matmul FLOP/s over 6 × parameters FLOPs per token (LoRA ≈ 3 × a 2 × N forward).
Prints one JSON line. Usage: .venv/bin/python bench/train_speed.py [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "preset": [],
    "gradient_checkpointing": ["disable_gradient_checkpointing=false"],
    "packing": ["packing=true", "cutoff_len=256"],
    "batch_4": ["per_device_train_batch_size=4"],
    "batch_16": ["per_device_train_batch_size=16"],
}


def matmul_flops(size: int = 1024, repeats: int = 20) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def cola_rows(limit: int) -> list[str]:
    path = ROOT.parent / "shared/data/cola/in_domain_train.tsv"
    if path.is_file():
        return [line.split("\t")[3] + "\t" + line.split("\t")[1] for line in path.read_text().splitlines()[:limit]]
    return [f"The {i} quick brown foxes jumped over the lazy dog number {i}.\t{i % 2}" for i in range(limit)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--model", type=Path, default=ROOT / "models/smollm2")
    args = parser.parse_args()
    from transformers import AutoConfig, AutoModelForCausalLM

    params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.model))
                 .parameters())
    flops = matmul_flops()
    bound = flops / (6 * params)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        records = [{"instruction": "Is this sentence grammatical? Answer 1 or 0.", "input": text, "output": label}
                   for text, label in (row.split("\t") for row in cola_rows(16 * (args.steps + 2)))]
        (tmp / "bench_train.json").write_text(json.dumps(records))
        (tmp / "dataset_info.json").write_text(json.dumps({"bench_train": {
            "file_name": "bench_train.json", "columns": {"prompt": "instruction", "query": "input", "response": "output"}}}))
        for name, overrides in SETTINGS.items():
            out = tmp / "saves" / name
            command = [sys.executable, "-m", "pipeline", "train", "--model", "smollm2", "--task", "bench",
                       f"model_name_or_path={args.model}", f"dataset_dir={tmp}", f"output_dir={out}",
                       f"max_steps={args.steps}", "save_steps=100000", "logging_steps=1", "plot_loss=false",
                       "include_num_input_tokens_seen=true", *overrides]
            run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
            if run.returncode != 0:
                results[name] = {"error": run.stderr[-500:]}
                continue
            metrics = json.loads((out / "all_results.json").read_text())
            tokens = metrics.get("num_input_tokens_seen") or metrics.get("train_num_input_tokens_seen")
            tokens_per_s = tokens / metrics["train_runtime"]
            results[name] = {"tokens_per_s": round(tokens_per_s, 1), "of_bound": round(tokens_per_s / bound, 3),
                             "seconds": round(metrics["train_runtime"], 1), "tokens": tokens}
    base = results["preset"].get("tokens_per_s")
    for result in results.values():
        if base and "tokens_per_s" in result:
            result["vs_preset"] = round(result["tokens_per_s"] / base, 2)
    print(json.dumps({"bench": "train_speed", "model": "smollm2", "params": params, "steps": args.steps,
                      "matmul_gflops": round(flops / 1e9, 1), "bound_tokens_per_s": round(bound, 1),
                      "load_avg_1m": os.getloadavg()[0], "settings": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
