"""Issue #21, secrets: a hub token given to `make train` reaches no file the run writes (the Trainer's pickled
arguments included) and nothing make or the tools print. A real one-step training of the tiny model, with a
checkpoint, and a prediction with the same arguments.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hf_SECRETxyz"
pytestmark = pytest.mark.slow


def test_hub_token_is_in_no_file_and_no_output(tiny_model, tmp_path):
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "adapters", "judge", "--name", "judge", "--data-dir", str(data), "--tokenizer", "none"]
        + ["--train", str(ROOT / "data/samples/judge_train.csv"), "--test", str(ROOT / "data/samples/judge_test.csv")],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (tmp_path / "stamp").touch()
    overrides = [
        f"model_name_or_path={tiny_model}",
        f"hub_token={SECRET}",
        f"hf_hub_token={SECRET}",
        "cutoff_len=128",
    ]

    def make(target: str, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [
                "make",
                "--no-print-directory",
                "-f",
                str(ROOT / "Makefile"),
                target,
                "MODEL=tiny",
                "TASK=judge",
                f"DATA_DIR={data}",
                f"ARGS={' '.join([*overrides, *args])}",
                f"STAMP={tmp_path / 'stamp'}",
                "-o",
                str(tmp_path / "stamp"),
                f"SMOLLM2={tmp_path / 'stamp'}",
                f"GEMMA3={tmp_path / 'stamp'}",
                f"TINY={tmp_path / 'stamp'}",
                f"LLMCOMP={sys.executable} -m llmcomp",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": str(ROOT), "DISABLE_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1"},
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert SECRET not in proc.stdout and SECRET not in proc.stderr
        return proc

    make("train", "max_steps=1", "save_steps=1", "per_device_train_batch_size=2")
    make("predict", "max_new_tokens=2", "per_device_eval_batch_size=8")
    run = tmp_path / "saves" / "judge" / "tiny" / "lora"
    assert (run / "checkpoint-1" / "training_args.bin").is_file() and (run / "training_args.bin").is_file()
    assert (tmp_path / "predictions" / "judge" / "tiny.csv").is_file()
    leaked = [
        str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()
    ]
    assert leaked == []
    # the pickled arguments still load, with the token blanked
    import torch

    args = torch.load(run / "training_args.bin", weights_only=False)
    assert not args.hub_token
