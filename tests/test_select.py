"""Checkpoint selection (issue #23 part 2): make select scores every complete checkpoint and the final adapter once,
CHECKPOINT=best|N makes predict and export read the chosen one, and the manifest says which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_make, run_tiny, toy_records, write_dataset

from pipeline.checkpoints import chosen_checkpoint
from pipeline.errors import RunError
from pipeline.select import best_entry, candidates


def fake_checkpoint(folder: Path, step: int, weights: bytes = b"") -> Path:
    """A folder pipeline.checkpoints counts as complete (trainer state, adapter weights with a valid header)."""
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (folder / "adapter_model.safetensors").write_bytes(
        len(header).to_bytes(8, "little") + header + (weights or b"\0" * 4)
    )
    (folder / "adapter_config.json").write_text("{}")
    return folder


def test_candidates_are_complete_checkpoints_by_step_then_the_final_adapter(tmp_path):
    run = tmp_path / "lora"
    for step in (10, 2):
        fake_checkpoint(run / f"checkpoint-{step}", step)
    (run / "checkpoint-12").mkdir()  # an interrupted save: no trainer state
    assert [c.name for c in candidates(run)] == ["checkpoint-2", "checkpoint-10"]
    (run / "trainer_state.json").write_text(json.dumps({"global_step": 12}))
    (run / "adapter_config.json").write_text("{}")
    (run / "adapter_model.safetensors").write_bytes((run / "checkpoint-2/adapter_model.safetensors").read_bytes())
    assert [(c.name, c.step) for c in candidates(run)] == [("checkpoint-2", 2), ("checkpoint-10", 10), ("final", 12)]


def test_best_is_the_highest_metric_and_a_tie_goes_to_the_earlier_step():
    entries = [
        {"name": "checkpoint-2", "step": 2, "mcc": 0.1},
        {"name": "checkpoint-4", "step": 4, "mcc": 0.3},
        {"name": "final", "step": 6, "mcc": 0.3},
    ]
    assert best_entry(entries, "mcc")["name"] == "checkpoint-4"


def test_checkpoint_choices_are_refused_by_name(tmp_path):
    run = tmp_path / "lora"
    fake_checkpoint(run / "checkpoint-2", 2)
    with pytest.raises(RunError, match="make select MODEL=m TASK=t"):
        chosen_checkpoint(run, "best", "make select MODEL=m TASK=t")
    with pytest.raises(RunError, match="steps 2, or CHECKPOINT=final"):
        chosen_checkpoint(run, "3")
    with pytest.raises(RunError, match="expected best, final or a step number"):
        chosen_checkpoint(run, "../x")
    path, info = chosen_checkpoint(run, "2")
    assert path == run / "checkpoint-2" and info["step"] == 2 and info["chosen"] == "2"
    (run / "selection.json").write_text(
        json.dumps({"best": {"name": "checkpoint-2", "path": str(path), "state_sha256": "stale", "step": 2}})
    )
    with pytest.raises(RunError, match="retrained since"):
        chosen_checkpoint(run, "best")


@pytest.mark.slow
def test_select_scores_each_checkpoint_once_and_predict_reads_the_best(tiny_model, tmp_path):
    data = tmp_path / "data"
    for split, n, seed in (("train", 32, 0), ("dev", 8, 1), ("test", 4, 2)):
        write_dataset(data, f"cola_toy_{split}", toy_records(n, split, seed))
    where = (f"DATA_DIR={data}", f"ARGS=model_name_or_path={tiny_model}")
    refused = run_make(tmp_path, "predict", "MODEL=tiny", "TASK=cola_toy", "CHECKPOINT=best", *where, check=False)
    assert refused.returncode == 2 and "make select MODEL=tiny TASK=cola_toy" in refused.stderr
    run_tiny("train", "cola_toy", "max_steps=4", "save_steps=2", cwd=tmp_path, model=tiny_model, data_dir=data)

    first = run_make(tmp_path, "select", "MODEL=tiny", "TASK=cola_toy", *where)
    run_dir = tmp_path / "saves/cola_toy/tiny/lora"
    selection = json.loads((run_dir / "selection.json").read_text())
    scored = {entry["name"]: entry for entry in selection["scored"].values()}
    assert set(scored) == {"checkpoint-2", "checkpoint-4", "final"}
    assert scored["final"]["same_as"] == "checkpoint-4"  # the same weights: scored once
    assert first.stdout.count("[select] scoring") == 2 and "picked by mcc" in first.stdout
    assert selection["best"]["metric"] == "mcc" and (run_dir / "selection.png").stat().st_size > 1000
    assert (run_dir / "selection/dev/checkpoint-2.csv").is_file() and not (tmp_path / "predictions").exists()

    again = run_make(tmp_path, "select", "MODEL=tiny", "TASK=cola_toy", *where)
    assert "[select] scoring" not in again.stdout and "best:" in again.stdout
    # CALIBRATE=N: the calibrated figures, kept apart from the raw ones (each scored once, the raw ones stay)
    calibrated = run_make(tmp_path, "select", "MODEL=tiny", "TASK=cola_toy", "CALIBRATE=8", *where)
    assert calibrated.stdout.count("[select] scoring") == 2 and "calibrated on 8 train rows" in calibrated.stdout
    scored = json.loads((run_dir / "selection.json").read_text())["scored"]
    assert sorted(e["calibration_rows"] for e in scored.values()) == [0, 0, 0, 8, 8, 8]
    assert all(key.endswith("|calibrated-8") == (e["calibration_rows"] == 8) for key, e in scored.items())

    run_make(tmp_path, "predict", "MODEL=tiny", "TASK=cola_toy", "CHECKPOINT=2", "LIMIT=2", *where)
    manifest = json.loads((tmp_path / "saves/cola_toy/tiny/predict/manifest.json").read_text())
    assert manifest["checkpoint"]["name"] == "checkpoint-2" and manifest["checkpoint"]["chosen"] == "2"
    assert "checkpoint-2" in (tmp_path / "saves/cola_toy/tiny/predict/run.yaml").read_text()
    run_make(tmp_path, "predict", "MODE=score", "MODEL=tiny", "TASK=cola_toy", "CHECKPOINT=best", *where)
    report = json.loads((tmp_path / "saves/cola_toy/tiny/score/report.json").read_text())
    assert report["checkpoint"]["chosen"] == "best" and report["checkpoint"]["name"] == selection["best"]["name"]
