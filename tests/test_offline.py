"""#22.5: a hub model that cannot be downloaded is one short message (the id, no network or no access, the
local-folder override) and leaves no run folder, instead of a 40-line ModelScope traceback and a failed run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


@pytest.mark.parametrize("stage", ["train", "predict"])
def test_an_unreachable_hub_model_is_one_line_and_no_run_folder(tmp_path, stage):
    from adapters.cli import main

    files = ["--train", str(SAMPLES / "judge_train.csv"), "--test", str(SAMPLES / "judge_test.csv")]
    assert main(["judge", *files, "--task", "jd", "--data-dir", str(tmp_path / "data"), "--tokenizer", "none"]) == 0
    # the hub answers nowhere (a closed local port), whatever network the machine has; nothing cached
    env = {**os.environ, "USE_MODELSCOPE_HUB": "1", "MODELSCOPE_DOMAIN": "127.0.0.1:9"}
    env.update(MODELSCOPE_CACHE=str(tmp_path / "ms"), HF_HUB_CACHE=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "pipeline", stage, "--model", "qwen2", "--task", "jd"]
    if stage == "predict":
        argv.append("adapter_name_or_path=")  # the base model: nothing trained is needed to reach the download
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "model Qwen/Qwen2-7B-Instruct (factory_configs/qwen2) is not a local folder" in proc.stderr
    assert "ModelScope (127.0.0.1:9) cannot be reached" in proc.stderr
    assert "ARGS=model_name_or_path=/path/to/Qwen2-7B-Instruct" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3
    assert not (tmp_path / "saves").exists()
