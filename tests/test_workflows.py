"""Issue #13 through the real Makefile, each from a folder of its own with the tiny model `make setup` builds there:
LIMIT=N trial runs, max_new_tokens from the adapter's report, progress lines in a log, the served model with the
official `openai` client and `make sc-submit` (logic), `make webchat`, and `make exam-layout` (CoLA).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import free_port, make_command, run_make, subprocess_env

ROOT = Path(__file__).resolve().parents[1]
KEY = "EMPTY"  # what the original logic client sends: the README's drop-in
OPTIONS = ["冬天", "夏天", "春天"]


def rows_of(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def logic_jsonl(path: Path, problems: int, labelled: bool) -> Path:
    lines = []
    for p in range(problems):
        questions = [
            {
                "question": f"问题 {q}：哪个季节最冷？",
                "options": OPTIONS[: 2 + q % 2],
                **({"answer": "A"} if labelled else {}),
            }
            for q in range(2)
        ]
        lines.append(
            json.dumps({"problem": f"第{p}题。", "questions": questions, "id": f"p{p:03d}"}, ensure_ascii=False)
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """make setup (builds models/tiny here) → make data TASK=logic LIMIT=8 → make train MODEL=tiny (1 step)."""
    work = tmp_path_factory.mktemp("workflow")
    setup = run_make(work, "setup")
    assert "tools.tiny" in setup.stdout and (work / "models/tiny/config.json").is_file()
    train, test = logic_jsonl(work / "train.jsonl", 6, True), logic_jsonl(work / "test.jsonl", 6, False)
    data = run_make(
        work, "data", "TASK=logic", f"TRAIN={train}", f"TEST={test}", "LIMIT=8", "DATA_ARGS=--tokenizer models/tiny"
    )
    assert "logic_test limited: LIMIT=8: the first 8 of 12 rows, a trial run" in data.stdout
    run_make(
        work,
        "train",
        "MODEL=tiny",
        "TASK=logic",
        "ARGS=max_steps=1 per_device_train_batch_size=2 cutoff_len=256 save_steps=1000",
    )
    return work


# ---------------------------------------------------------------- LIMIT, max_new_tokens, progress lines


@pytest.mark.slow
def test_predict_limit_budget_and_progress_lines(work):
    report = json.loads((work / "data/logic_report.json").read_text(encoding="utf-8"))
    answer = report["datasets"]["logic_train"]["tokens"]["answer"]
    assert answer["p99"] == 1 and answer["max_new_tokens"] == 9  # one letter + the margin
    proc = run_make(work, "predict", "MODEL=tiny", "TASK=logic", "LIMIT=6", "ARGS=per_device_eval_batch_size=1")
    out = proc.stdout
    assert "max_new_tokens 9: data/logic_report.json" in out
    assert "LIMIT=6: the first 6 of 8 rows of logic_test" in out and "(LIMIT=6: a trial run)" in out
    assert "[predict] 5/6 batches (83.33%)" in out  # LLaMA-Factory's own progress log, one line per update
    assert "it/s]" not in proc.stdout + proc.stderr  # no tqdm redraws in a log
    run = yaml.safe_load((work / "saves/logic/tiny/predict/run.yaml").read_text(encoding="utf-8"))
    assert run["max_new_tokens"] == 9 and run["disable_tqdm"] is True
    assert run["dataset_dir"] == "saves/logic/tiny/predict/trial/test-limit6" and "max_samples" not in run
    rows = rows_of(work / "predictions/logic/test-limit6/tiny.csv")
    assert [r["id"] for r in rows] == ["p000#0", "p000#1", "p001#0", "p001#1", "p002#0", "p002#1"]
    assert not any(r["prediction"].endswith("\ufffd") for r in rows)
    # the user's own value wins; label scoring takes LIMIT too
    dry = run_make(work, "predict", "MODEL=tiny", "TASK=logic", "ARGS=--dry-run max_new_tokens=3").stdout
    assert "max_new_tokens: 3" in dry and "max_new_tokens 3: your override" in dry
    score = run_make(work, "predict", "MODE=score", "MODEL=tiny", "TASK=logic", "LIMIT=3").stdout
    assert "(LIMIT=3: a trial run)" in score and "LIMIT=3: the first 3 of 8 rows of logic_test" in score
    assert len(rows_of(work / "predictions/logic/test-limit3/tiny_score.csv")) == 3


def test_long_answers_get_room(tmp_path, tiny_model):
    """QA answers of ~100 tokens: predict's max_new_tokens comes from the report, not the preset's 4."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models/tiny").symlink_to(tiny_model)
    answer = "关键词 " * 40
    lines = [
        json.dumps(
            {"conversation": [{"system": "答题", "input": f"问题{i}", "output": answer + str(i)}]}, ensure_ascii=False
        )
        for i in range(20)
    ]
    (tmp_path / "qa.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_make(
        tmp_path, "data", "TASK=qa", "NAME=gk", f"TRAIN={tmp_path / 'qa.jsonl'}", f"DATA_ARGS=--tokenizer {tiny_model}"
    )
    answer_tokens = json.loads((tmp_path / "data/gk_report.json").read_text())["datasets"]["gk_train"]["tokens"][
        "answer"
    ]
    assert answer_tokens["p99"] > 40
    assert answer_tokens["max_new_tokens"] == answer_tokens["p99"] + answer_tokens["p99"] // 4
    dry = run_make(tmp_path, "predict", "MODEL=tiny", "TASK=gk", "SPLIT=train", "ARGS=--dry-run").stdout
    assert f"max_new_tokens: {answer_tokens['max_new_tokens']}" in dry


# ---------------------------------------------------------------- logic: served model → submission


@pytest.fixture(scope="module")
def server(work):
    """`API_KEY=EMPTY make serve MODEL=tiny TASK=logic` on a free port; its process group stopped on teardown."""
    port = free_port()
    log = work / "serve.log"
    command = make_command(work, "serve", "MODEL=tiny", "TASK=logic", f"PORT={port}")
    with log.open("w") as handle:
        proc = subprocess.Popen(
            command,
            cwd=work,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=subprocess_env(API_KEY=KEY),
        )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {KEY}"}
                )
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_official_openai_client_is_a_drop_in(server):
    """The README's drop-in: base_url http://127.0.0.1:PORT/v1, api_key "EMPTY", model = the MODEL name."""
    openai = pytest.importorskip("openai", reason="the dev extra's openai client: pip install openai")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server}/v1", api_key="EMPTY")
    assert [model.id for model in client.models.list().data] == ["tiny"]
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "哪个季节最冷？"}], n=2, temperature=0.7, max_tokens=4
    )
    assert len(reply.choices) == 2 and all(isinstance(c.message.content, str) for c in reply.choices)
    wrong = openai.OpenAI(base_url=f"http://127.0.0.1:{server}/v1", api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


@pytest.mark.slow
def test_sc_submit_from_served_model_to_upload_and_answer_list(work, server):
    args = [
        "sc-submit",
        "MODEL=tiny",
        "TASK=logic",
        "SAMPLES=3",
        f"PORT={server}",
        "UNPARSED=A",
        f"SOURCE={work / 'test.jsonl'}",
    ]
    env = {"API_KEY": KEY}
    first = run_make(work, *args, "LIMIT=3", env=env)
    assert "LIMIT=3: the first 3 of 8 rows of logic_test" in first.stderr
    assert (work / "submissions/logic/test-limit3/answer.txt").read_text().count("\n") == 3  # a trial's own folder
    # resume across the chain: the next, larger trial asks only for the new ids, keeps the earlier samples
    samples = work / "predictions/logic/test-limit3/tiny_samples.csv"
    before = {(r["id"], r["sample"]): r["text"] for r in rows_of(samples)}
    second = run_make(work, *args, "LIMIT=5", env=env)
    assert "[sc] 2 ids, 6 samples to ask for (9 kept" in second.stderr
    after = rows_of(work / "predictions/logic/test-limit5/tiny_samples.csv")
    assert len(after) == 15 and all(
        before[(r["id"], r["sample"])] == r["text"] for r in after if (r["id"], r["sample"]) in before
    )
    assert not any(r["text"].endswith("\ufffd") for r in after)  # whole characters only
    voted = rows_of(work / "submissions/logic/test-limit5/voted_sc_tiny.csv")
    letters = (work / "submissions/logic/test-limit5/answer.txt").read_text().split()
    assert letters == [r["prediction"] for r in voted] and len(letters) == 5
    assert set(letters) <= {"A", "B", "C"}
    upload = [
        json.loads(line) for line in (work / "submissions/logic/test-limit5/upload.jsonl").read_text().splitlines()
    ]
    assert [p["id"] for p in upload] == ["p000", "p001", "p002"]  # the problems of the first 5 questions
    answered = [q.get("answer") for p in upload for q in p["questions"]]
    assert answered == [*letters, None]
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["limit"] == 5 and "trial run" in summary["partial"]


# ---------------------------------------------------------------- make webchat


def test_webchat_dry_run_is_llamafactory_webchat_on_loopback(tmp_path):
    (tmp_path / "models/tiny").mkdir(parents=True)
    (tmp_path / "models/tiny/config.json").touch()  # make setup's tiny model counts as built
    proc = run_make(tmp_path, "webchat", "MODEL=tiny", "TASK=logic", "PORT=7999", "ARGS=--dry-run")
    line = proc.stdout.strip().splitlines()[-1]
    head, _, rest = line.partition(" --model_name_or_path ")
    assert head.startswith("GRADIO_SERVER_NAME=127.0.0.1 GRADIO_SERVER_PORT=7999 GRADIO_SHARE=0 ")
    assert head.endswith("/llamafactory-cli webchat") and rest.startswith("models/tiny ")
    assert "--adapter_name_or_path saves/logic/tiny/lora --template smollm2" in line


@pytest.mark.slow
def test_webchat_serves_the_trained_adapter(work):
    port = free_port()
    log = work / "webchat.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            make_command(work, "webchat", "MODEL=tiny", "TASK=logic", f"PORT={port}", "ARGS=--no-browser"),
            cwd=work,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=subprocess_env(),
        )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200 and "LLaMA Factory Web Demo" in response.read().decode():
                        break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        assert "[webchat] tiny on logic: saves/logic/tiny/lora → http://127.0.0.1:" in log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


# ---------------------------------------------------------------- make exam-layout (CoLA)


@pytest.mark.slow
def test_exam_layout_for_cola(tmp_path, tiny_model):
    """Raw CoLA TSVs → data → (an adapter) → label scoring of dev → the exam's folder and score."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    (tmp_path / "models").mkdir()
    (tmp_path / "models/tiny").symlink_to(tiny_model)
    rows = [f"src\t{i % 2}\t{'' if i % 2 else '*'}\tThe cat number {i} sat on the mat." for i in range(160)]
    (tmp_path / "train.tsv").write_text("\n".join(rows[:40]) + "\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    run_make(
        tmp_path,
        "data",
        "TASK=cola",
        f"TRAIN={tmp_path / 'train.tsv'}",
        f"DEV={tmp_path / 'dev.tsv'}",
        "DATA_ARGS=--tokenizer none",
    )
    torch.manual_seed(0)  # a trained adapter stands in for make train (tested elsewhere)
    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    lora.save_pretrained(tmp_path / "saves/cola/tiny/lora")
    (tmp_path / "saves/cola/tiny/lora/checkpoint-1").mkdir()
    run_make(tmp_path, "predict", "MODE=score", "MODEL=tiny", "TASK=cola", "SPLIT=dev")
    out = tmp_path / "exam"
    proc = run_make(tmp_path, "exam-layout", "MODEL=tiny", "TASK=cola", f"OUT={out}")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "pre_data/CoLA_dev.json",
        "pre_data/CoLA_train.json",
        "result_CoLA.txt",
        "saved_model/README.md",
        "saved_model/adapter_config.json",
        "saved_model/adapter_model.safetensors",
    ]
    assert (out / "pre_data/CoLA_dev.json").read_bytes() == (tmp_path / "data/cola_dev.json").read_bytes()
    result = (out / "result_CoLA.txt").read_text().split()
    scored = rows_of(tmp_path / "predictions/cola/dev/tiny_score.csv")
    assert result == [r["prediction"] for r in scored[:150]]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    gold = [str(i % 2) for i in range(150)]
    accuracy = sum(g == p for g, p in zip(gold, result, strict=True)) / 150
    assert summary["rows"] == 150 and summary["accuracy"] == pytest.approx(accuracy)
    assert summary["seed_score"] == pytest.approx(accuracy * 70)
    assert f"exam score: accuracy {accuracy:.4f} × 70" in proc.stderr
    assert "predictions/cola/dev/tiny_score.csv" in summary["predictions"] and "LoRA adapter" in summary["saved_model"]


def test_a_character_cut_by_the_token_limit_is_dropped(tmp_path):
    """The HF engine decodes a multi-byte character cut by max_new_tokens as U+FFFD: answers keep whole ones."""
    from pipeline.predict import predicted_rows
    from pipeline.self_consistency import whole_characters

    assert whole_characters("答案是C\ufffd") == "答案是C" and whole_characters("关键词\ufffd\ufffd") == "关键词"
    assert whole_characters("\ufffd在中间") == "\ufffd在中间"  # only the cut end
    (tmp_path / "test.json").write_text(
        json.dumps(
            [
                {"id": "a", "instruction": "", "input": "", "output": ""},
                {"id": "b", "instruction": "", "input": "", "output": ""},
            ]
        )
    )
    (tmp_path / "generated_predictions.jsonl").write_text('{"predict": "医学\\ufffd"}\n', encoding="utf-8")
    assert predicted_rows(tmp_path, tmp_path / "test.json", limit=1) == [{"id": "a", "prediction": "医学"}]


# ---------------------------------------------------------------- iFLYTEK papers: labels + keywords → submit.csv


@pytest.mark.slow
def test_paper_from_raw_csv_to_submission_with_make(tmp_path):
    """make setup → make data (train with label and Keywords) → label scoring of NAME_cls and generated keywords of
    NAME_kw (the tiny base model: no training needed to prove the plumbing) → make submit-paper."""
    work = tmp_path
    run_make(work, "setup")
    header = "uuid,title,author,abstract,Keywords,label\n"
    rows = [
        f"{i},Title {i},A,Abstract about {'hearts' if i % 2 else 'printers'},k{i}; w{i},{i % 2}\n" for i in range(8)
    ]
    (work / "train.csv").write_text(header + "".join(rows), encoding="utf-8")
    (work / "test.csv").write_text(
        "uuid,title,author,abstract\n" + "".join(f"t{i},T{i},B,About {i}\n" for i in range(3)), encoding="utf-8"
    )
    run_make(
        work, "data", "TASK=paper", "NAME=p", "TRAIN=train.csv", "TEST=test.csv", "DATA_ARGS=--tokenizer models/tiny"
    )
    base = "ARGS=adapter_name_or_path="
    run_make(work, "predict", "MODE=score", "MODEL=tiny", "TASK=p_cls", base)
    run_make(work, "predict", "MODEL=tiny", "TASK=p_kw", f"{base} max_new_tokens=4")
    submitted = run_make(work, "submit-paper", "NAME=p", "KW_MODEL=tiny", "TIE=tiny_score", "MAX_UNPARSED=100%")
    rows_out = rows_of(work / "submissions" / "p_cls" / "submit.csv")
    assert [r["uuid"] for r in rows_out] == ["t0", "t1", "t2"] and list(rows_out[0]) == ["uuid", "Keywords", "label"]
    assert {r["label"] for r in rows_out} <= {"0", "1"}
    assert "submit.csv" in submitted.stdout
