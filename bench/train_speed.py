"""LoRA training speed of an embedded preset against the CPU's bound, and what each lever does to it.

    .venv/bin/python bench/train_speed.py [--model models/gemma3] [--steps 4] [--profile] [--only preset,all_logits]

`preset` is what `make train` runs, which includes our answer-only output layer (pipeline/train_entry.py);
`all_logits` turns that off (LLaMA-Factory as shipped). The other levers are LLaMA-Factory's own settings.

Same data (CoLA train rows from ../shared/data, else generated sentences), same steps, one fresh process per setting,
each through LLaMA-Factory's own `run_exp` on the resolved preset (what `make train` runs): the preset as shipped,
then one lever changed at a time. Tokens are the real (non-padding) tokens the model saw, counted by a forward hook
(padding is work but not progress; LLaMA-Factory's packed 4-D masks defeat the Trainer's own count); seconds are the
steps after the first (warm-up). The bound is the CPU's measured fp32 matmul FLOP/s over 6 × parameters FLOPs per
token (LoRA ≈ 3 × a 2 × N forward). On a shared machine wall time measures the neighbours, so the main figure is
per CPU-second of the process (`of_bound_cpu`: tokens per CPU-second over matmul FLOP per CPU-second, the matmul
measured in the same process before and after its training); `of_bound_wall` uses the parent's wall-clock matmul. `--profile` adds the
preset's top torch-profiler ops over steps 2–3 (microseconds per op against seconds per step). Prints one JSON line.
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
# lever → (LLaMA-Factory overrides, extra environment)
SETTINGS: dict[str, tuple[list[str], dict[str, str]]] = {
    "preset": ([], {}),
    "all_logits": ([], {"LLMCOMP_ALL_LOGITS": "1"}),
    "group_by_length": (["group_by_length=true"], {}),
    # rows of 128 tokens, 3 per batch: about the preset's tokens per step (8 rows of ~45), so only packing differs
    "neat_packing": (["neat_packing=true", "packing=true", "cutoff_len=128", "per_device_train_batch_size=3"], {}),
    "fused_adamw": (["optim=adamw_torch_fused"], {}),
    "dataloader_workers_1": (["dataloader_num_workers=1"], {}),
    "threads_1": ([], {"OMP_NUM_THREADS": "1"}),
    "eager_attention": (["flash_attn=disabled"], {}),
    "batch_16": (["per_device_train_batch_size=16"], {}),
    "gradient_checkpointing": (["disable_gradient_checkpointing=false"], {}),
}


def matmul_flops(size: int = 1024, repeats: int = 20, cpu: bool = False) -> float:
    """fp32 matmul FLOP per second of wall time, or (cpu=True) per second of this process's CPU time."""
    import torch

    clock = time.process_time if cpu else time.perf_counter
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    start = clock()
    for _ in range(repeats):
        torch.matmul(a, b)
    return 2 * size**3 * repeats / (clock() - start)


def cola_rows(limit: int) -> list[str]:
    path = ROOT.parent / "shared/data/cola/in_domain_train.tsv"
    if path.is_file():
        return [line.split("\t")[3] + "\t" + line.split("\t")[1] for line in path.read_text().splitlines()[:limit]]
    return [f"The {i} quick brown foxes jumped over the lazy dog number {i}.\t{i % 2}" for i in range(limit)]


def judge_rows(limit: int) -> list[tuple[str, str]]:
    """(essay, score) pairs of ../shared/data/df1032/train_fluency_1200.csv, else long generated text."""
    path = ROOT.parent / "shared/data/df1032/train_fluency_1200.csv"
    if path.is_file():
        import csv

        with path.open(encoding="gb18030", newline="") as handle:
            return [(row["待评判内容"], row["标注分值"]) for row in csv.DictReader(handle)][:limit]
    return [("这是一段用来测试训练速度的长文本。" * 60, str(1 + i % 5)) for i in range(limit)]


def real_tokens(kwargs: dict) -> tuple[int, int]:
    """(real tokens, positions incl. padding) of one forward: 2-D masks count non-zero entries; LLaMA-Factory's
    4-D block-diagonal (neat packing) masks hold 0.0 on the diagonal where a real token attends to itself."""
    ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
    positions = ids.numel()
    if mask is None:
        return positions, positions
    if mask.dim() == 2:
        return int((mask != 0).sum()), positions
    diagonal = mask.diagonal(dim1=-2, dim2=-1)[:, 0]
    return int((diagonal == 0).sum() if diagonal.is_floating_point() else diagonal.sum()), positions


def run_one(config: dict, profile: bool) -> dict:
    """One training run in this process (LLaMA-Factory's run_exp), timed and counted from the second step on."""
    import torch
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    from pipeline.train_entry import AnswerLogits

    meter = {"tokens": 0, "positions": 0, "seconds": 0.0, "cpu_seconds": 0.0, "steps": 0}

    class Meter(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            def count(_module, _args, inputs):
                if model.training:
                    tokens, positions = real_tokens(inputs)
                    self.pending = (tokens, positions)

            self.pending = (0, 0)
            model.register_forward_pre_hook(count, with_kwargs=True)
            self.profiler = None

        def on_step_begin(self, args, state, control, **kwargs):
            self.start, self.start_cpu = time.perf_counter(), time.process_time()
            if profile and state.global_step == 1:
                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.profiler.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step > 1:  # the first step pays lazy initialisation
                meter["seconds"] += time.perf_counter() - self.start
                meter["cpu_seconds"] += time.process_time() - self.start_cpu
                meter["tokens"] += self.pending[0]
                meter["positions"] += self.pending[1]
                meter["steps"] += 1
            if self.profiler is not None and state.global_step == 3:
                self.profiler.__exit__(None, None, None)
                table = self.profiler.key_averages()
                total = sum(event.self_cpu_time_total for event in table)
                meter["profile"] = [
                    {"op": e.key, "share": round(e.self_cpu_time_total / total, 3)}
                    for e in sorted(table, key=lambda e: -e.self_cpu_time_total)[:12]
                ]
                self.profiler = None

    before = matmul_flops(cpu=True)
    run_exp(dict(config), callbacks=[AnswerLogits(), Meter()])
    meter["matmul_flops_cpu"] = (before + matmul_flops(cpu=True)) / 2
    meter["threads"] = torch.get_num_threads()
    return meter


def child(spec: str) -> int:
    """`--child JSON`: resolve the preset with the overrides and train; print the meter as one JSON line."""
    from pipeline.presets import parse_overrides, resolve_config

    job = json.loads(spec)
    config = resolve_config(
        job["preset"], "train", "bench", parse_overrides(job["overrides"]), data_dir=job["data_dir"]
    )
    config.update(overwrite_output_dir=True)
    print("METER " + json.dumps(run_one(config, job["profile"])), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", type=Path, default=ROOT / "models/smollm2")
    parser.add_argument(
        "--data",
        choices=("cola", "judge"),
        default="cola",
        help="cola: short sentences (~45 tokens); judge: df1032 fluency essays at the preset's cutoff (long prompts, "
        "one-token answers)",
    )
    parser.add_argument("--profile", action="store_true", help="the preset's top ops (torch profiler, steps 2–4)")
    parser.add_argument("--only", help="comma-separated settings (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    from transformers import AutoConfig, AutoModelForCausalLM

    params = sum(
        p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.model)).parameters()
    )
    flops_before = matmul_flops()
    names = args.only.split(",") if args.only else list(SETTINGS)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = 16 * (args.steps + 2) * 4  # enough for batch 16 and for packing several rows into one
        if args.data == "judge":
            instruction = "请评判这段文字的流畅性，给出1到5的分数。"
            pairs = judge_rows(rows)
        else:
            instruction, pairs = (
                "Is this sentence grammatical? Answer 1 or 0.",
                [r.split("\t") for r in cola_rows(rows)],
            )
        records = [{"instruction": instruction, "input": text, "output": label} for text, label in pairs]
        (tmp / "bench_train.json").write_text(json.dumps(records))
        (tmp / "dataset_info.json").write_text(
            json.dumps(
                {
                    "bench_train": {
                        "file_name": "bench_train.json",
                        "columns": {"prompt": "instruction", "query": "input", "response": "output"},
                    }
                }
            )
        )
        for name in names:
            overrides, env = SETTINGS[name]
            overrides = [
                f"model_name_or_path={args.model}",
                f"output_dir={tmp / 'saves' / name}",
                f"max_steps={args.steps}",
                "save_steps=100000",
                "logging_steps=1",
                "plot_loss=false",
                "report_to=none",
                *overrides,
            ]
            job = json.dumps(
                {
                    "overrides": overrides,
                    "data_dir": str(tmp),
                    "profile": args.profile and name == "preset",
                    "preset": args.model.name,
                }
            )
            run = subprocess.run(
                [sys.executable, __file__, "--child", job],
                cwd=ROOT,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT), "DISABLE_VERSION_CHECK": "1", **env},
            )
            lines = [line for line in run.stdout.splitlines() if line.startswith("METER ")]
            if run.returncode != 0 or not lines:
                results[name] = {"error": run.stderr[-600:]}
                continue
            meter = json.loads(lines[-1][len("METER ") :])
            tokens_per_s, tokens_per_cpu_s = meter["tokens"] / meter["seconds"], meter["tokens"] / meter["cpu_seconds"]
            results[name] = {
                "tokens_per_s": round(tokens_per_s, 1),
                "tokens_per_cpu_s": round(tokens_per_cpu_s, 2),
                "of_bound_cpu": round(tokens_per_cpu_s / (meter["matmul_flops_cpu"] / (6 * params)), 3),
                "padding_share": round(1 - meter["tokens"] / meter["positions"], 3),
                "seconds": round(meter["seconds"], 2),
                "tokens": meter["tokens"],
                "threads": meter["threads"],
                **({"profile": meter["profile"]} if "profile" in meter else {}),
            }
            print(f"[train_speed] {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    flops_after = matmul_flops()
    bound = (flops_before + flops_after) / 2 / (6 * params)
    profile = results.get("preset", {}).pop("profile", None)
    base = results.get("preset", {}).get("tokens_per_s")
    base_cpu = results.get("preset", {}).get("tokens_per_cpu_s")
    for result in results.values():
        if "tokens_per_s" in result:
            result["of_bound_wall"] = round(result["tokens_per_s"] / bound, 3)
            if base:
                result["vs_preset"] = round(result["tokens_per_s"] / base, 2)
                result["vs_preset_cpu"] = round(result["tokens_per_cpu_s"] / base_cpu, 2)
    print(
        json.dumps(
            {
                "bench": "train_speed",
                "model": args.model.name,
                "data": args.data,
                "params": params,
                "steps": args.steps,
                "matmul_gflops": [round(flops_before / 1e9, 1), round(flops_after / 1e9, 1)],
                "bound_tokens_per_s": round(bound, 1),
                "load_avg_1m": os.getloadavg()[0],
                "settings": results,
                **({"preset_profile": profile} if profile else {}),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
