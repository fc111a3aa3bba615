"""Bench: label scoring vs LLaMA-Factory's batched generation vs the seeds' per-row generate loop, on the same CoLA
dev rows and the same SmolLM2 + LoRA adapter, each against the machine's forward-pass bound measured in the run.

Run: `.venv/bin/python bench/predict.py [--rows 200] [--adapter PATH] [--batch-size 16]`. Prints one JSON line.

- label scoring: `pipeline.label_scoring` in this process (model loaded once, timed from the first batch);
- batched generation: `python -m pipeline predict` as `make predict` runs it (LLaMA-Factory's predict_with_generate,
  greedy, the preset's batch size), rows/s from LLaMA-Factory's own predict_runtime (model loading excluded);
- per-row loop, as the seeds wrote it: `model.generate` per row on `tokenizer.apply_chat_template(...)` (the
  checkpoint's chat template, with its default system prompt), the same merged weights, the preset's max_new_tokens.
The bound: FLOP/s of fp32 `torch.matmul` measured just before each way, divided by 2 × parameters × prompt tokens
per row (one forward pass over the prompt per row). Label scoring runs a batch's common prompt prefix (template head
and instruction) once, so it can pass that bound; `positions_run_per_row` and `of_bound_per_position_run` show the
efficiency per position it actually computes. Without --adapter a LoRA is trained once on 400 stratified
train rows (20 steps) and kept in bench/results/cola_bench_lora for later runs. Read the ratios on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from adapters import get_task
from core.extract import extract_label
from pipeline.inference import infer_arguments
from pipeline.label_scoring import label_sets, scoring_task
from pipeline.presets import resolve_config
from pipeline.run import Run
from pipeline.scoring_engine import LabelScorer, score_encoded

ROOT = Path(__file__).resolve().parents[1]
COLA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data")) / "cola"
SMOLLM2 = ROOT / "models" / "smollm2"
TASK = "cola_bench"


def matmul_flops(n: int = 1024, reps: int = 8, tries: int = 3) -> float:
    """Best fp32 matmul FLOP/s of `tries` timings of `reps` n×n products (the machine's dense-math ceiling)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(tries):
        start = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def convert(data_dir: Path, rows: int) -> list[dict]:
    """cola_bench_{train,dev} via the adapters; cola_bench_test = the first `rows` dev rows (what predict reads)."""
    from adapters.cli import main as adapters_main

    with contextlib.redirect_stdout(sys.stderr):  # stdout is for the JSON line
        code = adapters_main(
            [
                "cola",
                "--train",
                str(COLA / "in_domain_train.tsv"),
                "--dev",
                str(COLA / "in_domain_dev.tsv"),
                "--name",
                TASK,
                "--data-dir",
                str(data_dir),
                "--max-train",
                "400",
                "--stratify",
                "--first-dev",
                str(rows),
                "--tokenizer",
                "none",
            ]
        )
    assert code == 0, "adapter conversion failed"
    dev = json.loads((data_dir / f"{TASK}_dev.json").read_text(encoding="utf-8"))
    (data_dir / f"{TASK}_test.json").write_text(json.dumps(dev, ensure_ascii=False), encoding="utf-8")
    info = json.loads((data_dir / "dataset_info.json").read_text(encoding="utf-8"))
    info[f"{TASK}_test"] = {**info[f"{TASK}_dev"], "file_name": f"{TASK}_test.json"}
    (data_dir / "dataset_info.json").write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
    return dev


def pipeline_command(stage: str, data_dir: Path, out_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline",
        stage,
        "--model",
        "smollm2",
        "--task",
        TASK,
        "--data-dir",
        str(data_dir),
        f"model_name_or_path={SMOLLM2}",
        f"dataset_dir={data_dir}",
        f"output_dir={out_dir}",
        *extra,
    ]


def run_quiet(command: list[str], cwd: Path, log: Path) -> float:
    """Run a pipeline stage in `cwd` (its predictions/ land there, not in the repo); return wall seconds."""
    start = time.perf_counter()
    with log.open("w") as handle:
        result = subprocess.run(
            command,
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "DISABLE_VERSION_CHECK": "1"},
        )
    if result.returncode != 0:  # the log lives in a temporary folder: show its tail before it goes
        tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-15:])
        raise SystemExit(f"{tail}\n{' '.join(command[2:5])} failed ({result.returncode}); see the log above")
    return time.perf_counter() - start


def train_adapter(data_dir: Path, adapter: Path, work: Path) -> float:
    return run_quiet(
        pipeline_command(
            "train", data_dir, adapter, "max_steps=20", "save_steps=1000", "plot_loss=false", "logging_steps=5"
        ),
        work,
        work / "train.log",
    )


def rounded(metrics: dict, keys: tuple[str, ...]) -> dict:
    return {key: None if metrics.get(key) is None else round(metrics[key], 3) for key in keys}


def parsed_metrics(
    records: list[dict], texts: list[str], task: str = "cola", keys: tuple[str, ...] = ("accuracy", "mcc")
) -> dict:
    """Generated answers extracted under the task's rules, scored against the records' outputs."""
    from core.metrics import label_metrics

    rules = get_task(task)
    labels = [extract_label(text, rules.labels, rules.synonyms)[0] for text in texts]
    result = label_metrics([r["output"] for r in records], labels)
    return {"unparsed": result["unparsed"], **rounded(result, keys)}


def label_scoring(records: list[dict], data_dir: Path, adapter: Path, batch_size: int) -> tuple[dict, int]:
    config = resolve_config(
        "smollm2",
        "predict",
        TASK,
        {"model_name_or_path": str(SMOLLM2), "dataset_dir": str(data_dir), "adapter_name_or_path": str(adapter)},
    )
    scorer = LabelScorer(infer_arguments(config))
    sets = label_sets(records, scoring_task(Run.resolve(TASK, data_dir=data_dir)), TASK)
    encoded = scorer.encode(records, sets)
    score_encoded(scorer.model, encoded[:batch_size], batch_size, scorer.pad_id)  # warm-up: first-call overheads
    flops = matmul_flops()
    stats: dict = {}
    start = time.perf_counter()
    scores = score_encoded(scorer.model, encoded, batch_size, scorer.pad_id, stats=stats)
    seconds = time.perf_counter() - start
    texts = [labels[int(s.argmax())] for labels, s in zip(sets, scores, strict=True)]
    params = sum(p.numel() for p in scorer.model.parameters())
    tokens = sum(len(e.prompt) for e in encoded) / len(encoded)
    return {
        "rows_per_s": len(records) / seconds,
        "prompt_tokens_per_row": tokens,
        "positions_run_per_row": round(stats["prompt_positions"] / len(records), 1),
        "flops": flops,
        "seconds": seconds,
        **parsed_metrics(records, texts),
    }, params


def batched_generation(records: list[dict], data_dir: Path, adapter: Path, work: Path, tokens: float) -> dict:
    flops = matmul_flops()
    out_dir = work / "predict"
    wall = run_quiet(
        pipeline_command("predict", data_dir, out_dir, f"adapter_name_or_path={adapter}"), work, work / "predict.log"
    )
    results = json.loads((out_dir / "predict_results.json").read_text())
    rows = [json.loads(line) for line in (out_dir / "generated_predictions.jsonl").open(encoding="utf-8")]
    return {
        "rows_per_s": len(records) / results["predict_runtime"],
        "prompt_tokens_per_row": tokens,
        "flops": flops,
        "seconds": results["predict_runtime"],
        "wall_with_load_s": round(wall, 1),
        **parsed_metrics(records, [row["predict"] for row in rows]),
    }


def per_row_loop(records: list[dict], adapter: Path, max_new_tokens: int) -> dict:
    """The seeds' way: one generate call per row on the checkpoint's chat template."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    model = (
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(SMOLLM2, dtype=torch.float32), str(adapter))
        .merge_and_unload()
        .eval()
    )
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"{r['instruction']}\n{r['input']}"}],
            add_generation_prompt=True,
            return_tensors="pt",
        )
        for r in records
    ]
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), model.generation_config.eos_token_id]
    with torch.inference_mode():
        model.generate(prompts[0], max_new_tokens=2, do_sample=False)  # warm-up
        flops = matmul_flops()
        start = time.perf_counter()
        texts = []
        for ids in prompts:
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=tokenizer.pad_token_id,
            )
            texts.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
        seconds = time.perf_counter() - start
    return {
        "rows_per_s": len(records) / seconds,
        "prompt_tokens_per_row": sum(p.shape[1] for p in prompts) / len(prompts),
        "flops": flops,
        "seconds": seconds,
        **parsed_metrics(records, texts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200, help="first N CoLA dev rows (200)")
    parser.add_argument("--adapter", type=Path, help="a smollm2 LoRA trained on CoLA (default: train one, kept)")
    parser.add_argument("--batch-size", type=int, default=16, help="label-scoring batch size (16)")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        records = convert(data_dir, args.rows)
        adapter = args.adapter or ROOT / "bench" / "results" / "cola_bench_lora"
        trained_s = None
        if not (adapter / "adapter_model.safetensors").is_file():
            trained_s = round(train_adapter(data_dir, adapter, work), 1)
        max_new_tokens = resolve_config("smollm2", "predict", TASK)["max_new_tokens"]
        scoring, params = label_scoring(records, data_dir, adapter, args.batch_size)
        generation = batched_generation(records, data_dir, adapter, work, scoring["prompt_tokens_per_row"])
        loop = per_row_loop(records, adapter, max_new_tokens)
    ways = {"label_scoring": scoring, "batched_generation": generation, "per_row_loop": loop}
    for way in ways.values():
        bound = way["flops"] / (2 * params * way["prompt_tokens_per_row"])
        if "positions_run_per_row" in way:  # the same ceiling per position actually run (shared prefix once)
            way["of_bound_per_position_run"] = round(
                way["rows_per_s"] * 2 * params * way["positions_run_per_row"] / way["flops"], 3
            )
        way.update(
            bound_rows_per_s=round(bound, 2),
            of_bound=round(way["rows_per_s"] / bound, 3),
            matmul_gflops=round(way.pop("flops") / 1e9, 1),
            rows_per_s=round(way["rows_per_s"], 2),
            prompt_tokens_per_row=round(way["prompt_tokens_per_row"], 1),
            seconds=round(way["seconds"], 1),
        )
    print(
        json.dumps(
            {
                "bench": "predict",
                "rows": len(records),
                "model": "smollm2+lora",
                "params": params,
                "threads": torch.get_num_threads(),
                "load_avg": round(os.getloadavg()[0], 2),
                "adapter": str(adapter),
                "adapter_trained_s": trained_s,
                **ways,
                "scoring_vs_per_row": round(scoring["rows_per_s"] / loop["rows_per_s"], 2),
                "scoring_vs_batched": round(scoring["rows_per_s"] / generation["rows_per_s"], 2),
                "command": "python bench/predict.py " + " ".join(sys.argv[1:]),
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
