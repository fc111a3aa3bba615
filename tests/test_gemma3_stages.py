"""MODEL=gemma3 end to end on the CPU (issue #14): train, score, predict, export, chat and the board preset.

The real converted Gemma 3 270M (models/gemma3) on the embedded judge sample, each stage through the project's own
CLI in a temp working directory (its data/, saves/ and predictions/), so the repo's folders are never touched.
One 2-step LoRA is trained once for the module; every later stage reads it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TASK = "g3_judge"
pytestmark = [pytest.mark.gemma3, pytest.mark.slow]


def run(args: list[str], cwd: Path, stdin: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{args[:3]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, gemma3_dir) -> Path:
    """data/ from the judge sample through the real adapter, then saves/TASK/gemma3/lora: 2 steps, batch 2."""
    work = tmp_path_factory.mktemp("gemma3")
    train_csv, test_csv = (str(ROOT / "data" / "samples" / f"judge_{split}.csv") for split in ("train", "test"))
    run(
        ["-m", "adapters", "judge", "--train", train_csv, "--test", test_csv]
        + ["--name", TASK, "--data-dir", str(work / "data"), "--tokenizer", "none"],
        cwd=work,
    )
    train = run(
        ["-m", "pipeline", "train", "--model", "gemma3", "--task", TASK, "--data-dir", str(work / "data")]
        + [f"model_name_or_path={gemma3_dir}", "max_steps=2", "cutoff_len=128", "per_device_train_batch_size=2"]
        + ["save_steps=1000", "logging_steps=1"],
        cwd=work,
    )
    (work / "train.log").write_text(train.stdout + train.stderr, encoding="utf-8")
    return work


def lora_dir(work: Path) -> Path:
    return work / "saves" / TASK / "gemma3" / "lora"


def test_train_writes_an_adapter_with_a_finite_loss(workdir):
    lora = lora_dir(workdir)
    assert (lora / "adapter_model.safetensors").is_file() and (lora / "adapter_config.json").is_file()
    assert json.loads((lora / "manifest.json").read_text(encoding="utf-8"))["status"] == "done"
    # pipeline/train_entry.py ran, and Gemma 3's forward took its answer-positions-only path
    assert "[train] output layer only where the loss is" in (workdir / "train.log").read_text(encoding="utf-8")
    logged = [json.loads(line) for line in (lora / "trainer_log.jsonl").read_text(encoding="utf-8").splitlines()]
    losses = [entry["loss"] for entry in logged if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) and loss > 0 for loss in losses), losses
    assert json.loads((lora / "trainer_state.json").read_text(encoding="utf-8"))["global_step"] == 2


def test_label_scoring_gives_each_row_one_of_its_labels(workdir, gemma3_dir):
    from adapters import get_task

    run(
        ["-m", "pipeline.score", "--model", "gemma3", "--task", TASK, "--data-dir", str(workdir / "data")]
        + ["--limit", "6", f"model_name_or_path={gemma3_dir}"],
        cwd=workdir,
    )
    with (workdir / "predictions" / TASK / "test-limit6" / "gemma3_score.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    spec = get_task("judge")
    assert len(rows) == 6
    for row in rows:
        labels, _ = spec.rules_for(row["dimension"])
        assert row["prediction"] in labels, row
        probs = [float(row[f"prob_{label}"]) for label in labels]
        assert abs(sum(probs) - 1) < 1e-3, row


def test_generation_predicts_a_trials_rows(workdir, gemma3_dir):
    proc = run(
        ["-m", "pipeline", "predict", "--model", "gemma3", "--task", TASK, "--data-dir", str(workdir / "data")]
        + ["--limit", "3", f"model_name_or_path={gemma3_dir}", "max_new_tokens=4"],
        cwd=workdir,
    )
    assert "3 predictions → predictions/" in proc.stdout
    with (workdir / "predictions" / TASK / "test-limit3" / "gemma3.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == ["TE0001", "TE0005", "TE0009"]  # LIMIT=3: one row of each dimension
    assert all(row["prediction"].strip() for row in rows), rows  # greedy generation gave every row some text


def test_export_merges_to_the_same_logits_as_base_plus_adapter(workdir, gemma3_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run(["-m", "pipeline", "export", "--model", "gemma3", "--task", TASK, f"model_name_or_path={gemma3_dir}"], workdir)
    merged_dir = workdir / "saves" / TASK / "gemma3" / "merged"
    assert (merged_dir / "Modelfile").is_file()
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    ids = tokenizer("<start_of_turn>user\n这句话通顺吗？<end_of_turn>\n<start_of_turn>model\n", return_tensors="pt")
    ids = ids.input_ids
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, attn_implementation="eager")
        assert merged.dtype == torch.float32
        exported = merged(ids).logits[0, -1]
        del merged
        base = AutoModelForCausalLM.from_pretrained(gemma3_dir, attn_implementation="eager")
        plain = base(ids).logits[0, -1]
        adapted = PeftModel.from_pretrained(base, lora_dir(workdir))(ids).logits[0, -1]
    assert (exported - adapted).abs().max().item() < 1e-4
    assert (plain - adapted).abs().max().item() > 1e-2  # the adapter moves the logits: the check above is not vacuous
    for weights in merged_dir.glob("*.safetensors"):
        weights.unlink()  # ~1.1 GB fp32: gone before the next test


def test_chat_answers_with_the_adapter_and_exits_cleanly(workdir, gemma3_dir):
    overrides = [f"model_name_or_path={gemma3_dir}", f"adapter_name_or_path={lora_dir(workdir)}"]
    dry = run(["-m", "pipeline.board", "chat", "--model", "gemma3", "--task", TASK, "--dry-run", *overrides], ROOT)
    assert "--template gemma " in dry.stdout and "--flash_attn disabled" in dry.stdout  # the preset's eager attention
    proc = run(
        ["-m", "pipeline.board", "chat", "--model", "gemma3", "--task", TASK, *overrides]
        + ["max_new_tokens=8", "do_sample=false"],
        cwd=ROOT,
        stdin="这句话通顺吗？春天来了，花都开了。\nexit\n",
    )
    assert "Loaded adapter(s)" in proc.stderr + proc.stdout
    answer = proc.stdout.split("Assistant:", 1)[1].split("User:", 1)[0]
    assert answer.strip(), proc.stdout[-2000:]
    assert "terminate called" not in proc.stderr


def test_board_preset_loads_models_gemma3_with_the_gemma_template(tmp_path):
    from llamafactory.extras.constants import DEFAULT_TEMPLATE

    from pipeline.presets import resolve_config

    config = resolve_config("gemma3", "train", "judge", cuda=False)
    assert config["model_name_or_path"] == "models/gemma3" and config["template"] == "gemma"
    proc = run(
        ["-m", "pipeline.board", "preset", "--model", "gemma3", "--task", TASK, "--workdir", str(tmp_path)], ROOT
    )
    preset = yaml.safe_load((tmp_path / "llamaboard_config" / f"gemma3_{TASK}.yaml").read_text(encoding="utf-8"))
    assert preset["top.model_path"] == str(ROOT / "models" / "gemma3") and preset["top.template"] == "gemma"
    assert preset["train.output_dir"] == f"saves/{TASK}/gemma3/lora" and preset["train.compute_type"] == "fp32"
    name = preset["top.model_name"]
    # Loading sets Model name, and the board then resets Template to that name's default: it must stay `gemma`.
    # LLaMA-Factory 0.9.5 lists no Gemma 3 270M with that template (Gemma-3-270M: none → "default"; its Instruct:
    # gemma2), so the name is a stand-in, and the preset command says so.
    assert DEFAULT_TEMPLATE[name] == "gemma"
    assert f"board model name {name!r} stands in for {ROOT / 'models' / 'gemma3'}" in proc.stderr
    user = yaml.safe_load((tmp_path / "llamaboard_cache" / "user_config.yaml").read_text(encoding="utf-8"))
    assert user["path_dict"][name] == str(ROOT / "models" / "gemma3")  # what Model path shows after loading
