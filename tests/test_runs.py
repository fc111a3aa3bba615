"""factory_configs/ presets through LLaMA-Factory's own parser, and the tiny model's train → predict → export chain."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import FAST_TRAIN, run_tiny, subprocess_env, tiny_command

from pipeline.checkpoints import prepare_train_dir
from pipeline.checks import check_config
from pipeline.errors import RunError
from pipeline.manifest import dataset_hashes
from pipeline.presets import CONFIG_DIR, STAGE_FILES, resolve_config

PRESETS = sorted(p.name for p in CONFIG_DIR.iterdir() if (p / "lora_sft.yaml").is_file())
TINY_FAST = [*FAST_TRAIN, "cutoff_len=128"]


def test_every_model_has_every_stage():
    assert set(PRESETS) >= {"glm4", "qwen2", "internlm2_5", "gemma2", "gemma", "smollm2", "gemma3", "tiny"}
    for model in PRESETS:
        for stage_file in STAGE_FILES.values():
            text = (CONFIG_DIR / model / stage_file).read_text(encoding="utf-8")
            assert text.startswith("# "), f"{model}/{stage_file} lacks its header comment"
            assert "### model" in text


@pytest.mark.parametrize("model", PRESETS)
@pytest.mark.parametrize("stage", list(STAGE_FILES))
def test_preset_parses_with_llamafactory(model, stage, judge_data):
    config = resolve_config(model, stage, "judge", {"dataset_dir": str(judge_data)}, cuda=False)
    assert config["bf16"] is False if stage != "export" else "bf16" not in config
    check_config(config, stage, f"{model}/{stage}")  # no weights are downloaded: parsing only


def test_bf16_only_with_cuda():
    assert resolve_config("qwen2", "train", "judge", cuda=True)["bf16"] is True
    assert resolve_config("qwen2", "train", "judge", cuda=False)["bf16"] is False
    assert resolve_config("smollm2", "train", "judge", cuda=True)["bf16"] is False  # the preset says CPU
    assert resolve_config("gemma3", "train", "judge", cuda=True)["bf16"] is False


def test_no_preset_runs_remote_code():
    # glm4 is the native -hf release, internlm2_5 a converted Llama (issue #15): remote code broke both
    needs = {
        m
        for m in PRESETS
        for stage in STAGE_FILES
        if resolve_config(m, stage, "judge", cuda=False).get("trust_remote_code")
    }
    assert needs == set()


def test_task_fills_datasets_and_folders():
    config = resolve_config("qwen2", "predict", "cola", cuda=False)
    assert config["eval_dataset"] == "cola_test"
    assert config["adapter_name_or_path"] == "saves/cola/qwen2/lora"
    assert config["output_dir"] == "saves/cola/qwen2/predict"
    assert resolve_config("qwen2", "export", "cola")["export_dir"] == "saves/cola/qwen2/merged"


def test_unknown_override_names_preset_and_override(judge_data):
    config = resolve_config("qwen2", "train", "judge", {"dataset_dir": str(judge_data), "lerning_rate": 1})
    with pytest.raises(RunError) as err:
        check_config(config, "train", "factory_configs/qwen2/lora_sft.yaml with overrides {'lerning_rate': 1}")
    assert "factory_configs/qwen2/lora_sft.yaml" in str(err.value) and "lerning_rate" in str(err.value)


def test_missing_dataset_is_refused_with_preset_named(judge_data):
    config = resolve_config("smollm2", "train", "nosuchtask", {"dataset_dir": str(judge_data)}, cuda=False)
    with pytest.raises(RunError, match=r"smollm2/lora_sft.yaml.*nosuchtask_train"):
        check_config(config, "train", "factory_configs/smollm2/lora_sft.yaml")


def test_cli_bad_override_exits_2(judge_data, tmp_path):
    result = subprocess.run(
        tiny_command("train", "judge", "--dry-run", f"dataset_dir={judge_data}", "no_such_key=3"),
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "factory_configs/tiny/lora_sft.yaml" in result.stderr and "no_such_key" in result.stderr


def test_finished_run_is_never_overwritten_silently(tmp_path):
    out = tmp_path / "lora"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(RunError, match="FRESH=1"):
        prepare_train_dir(out, fresh=False)
    overwrite, how = prepare_train_dir(out, fresh=True)
    assert overwrite and "moved" in how
    backups = list(tmp_path.glob("lora.bak-*"))
    assert len(backups) == 1 and (backups[0] / "adapter_model.safetensors").is_file()


def test_manifest_hash_follows_the_data(judge_data):
    config = {"dataset_dir": str(judge_data), "dataset": "judge_train"}
    before = dataset_hashes(config)
    data_file = judge_data / "judge_train.json"
    assert str(data_file) in before
    original = data_file.read_bytes()
    try:
        data_file.write_bytes(original.replace(b'"5"', b'"4"', 1))
        assert dataset_hashes(config)[str(data_file)] != before[str(data_file)]
    finally:
        data_file.write_bytes(original)


def run_pipeline(stage: str, cwd: Path, tiny_model: Path, data_dir: Path, *extra: str):
    return run_tiny(stage, "judge", f"dataset_dir={data_dir}", *extra, cwd=cwd, model=tiny_model, data_dir=data_dir)


@pytest.mark.slow
def test_tiny_train_predict_export_and_resume(tiny_model, judge_data, tmp_path):
    # Train 2 steps with a checkpoint, then lose the final save as an interrupted run would.
    run_pipeline("train", tmp_path, tiny_model, judge_data, *TINY_FAST, "max_steps=2", "save_steps=2")
    lora = tmp_path / "saves/judge/tiny/lora"
    assert (lora / "checkpoint-2").is_dir()
    manifest = json.loads((lora / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["git_commit"] and manifest["seed"] == 42
    assert any(path.endswith("judge_train.json") for path in manifest["datasets"])
    assert yaml.safe_load((lora / "run.yaml").read_text())["max_steps"] == 2
    (lora / "adapter_model.safetensors").unlink()

    result = run_pipeline("train", tmp_path, tiny_model, judge_data, *TINY_FAST, "max_steps=4", "save_steps=2")
    assert "resuming from" in result.stdout
    state = json.loads((lora / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert (lora / "adapter_model.safetensors").is_file()

    run_pipeline("predict", tmp_path, tiny_model, judge_data, "max_new_tokens=2")
    with (tmp_path / "predictions/judge/tiny.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    test_ids = [r["id"] for r in json.loads((judge_data / "judge_test.json").read_text(encoding="utf-8"))]
    assert [r["id"] for r in rows] == test_ids
    assert rows[0].keys() >= {"id", "prediction", "dimension"}

    run_pipeline("export", tmp_path, tiny_model, judge_data)
    merged = tmp_path / "saves/judge/tiny/merged"
    assert (merged / "Modelfile").is_file() and (merged / "tokenizer.json").is_file()
    assert list(merged.glob("*.safetensors"))
    assert (merged / "run.yaml").is_file() and (merged / "manifest.json").is_file()


@pytest.mark.slow
def test_sampled_predictions_give_a_samples_file(tiny_model, judge_data, tmp_path):
    run_pipeline("train", tmp_path, tiny_model, judge_data, *TINY_FAST, "max_steps=1")
    run_pipeline("predict", tmp_path, tiny_model, judge_data, "max_new_tokens=2", "--samples", "2")
    with (tmp_path / "predictions/judge/tiny_samples.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["sample"] for r in rows} == {"0", "1"} and len(rows) == 24
