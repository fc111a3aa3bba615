"""#22.3: LIMIT=N takes the same N rows in every stage, covering every group of the task (judge: each dimension,
whose 选择题 rows come last in the file), and a trial goes raw → submission like a full run.
#22.10: chat and webchat start with the dataset's system prompt, as predict does."""

from __future__ import annotations

import csv
import json
import shlex
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from adapters.cli import main as adapters_main
from pipeline.baseline import main as baseline_main
from pipeline.board import main as board_main
from pipeline.cli import main as pipeline_main
from pipeline.score import main as score_main
from pipeline.self_consistency import main as sc_main
from voting.cli import main as voting_main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
TRIAL = ["TE0001", "TE0005", "TE0009"]  # the first 流畅性, 规范性 and 选择题 rows of judge_test.csv (12 rows)


def test_a_trial_covers_every_group_in_file_order():
    from core.records import describe_trial, trial_indices, trial_records

    records = [{"id": str(i), "g": g} for i, g in enumerate("aaaaabbbc")]
    assert trial_indices(records, 3, "g") == [0, 5, 8]
    assert trial_indices(records, 5, "g") == [0, 1, 5, 6, 8]  # round robin: a, b, c, a, b
    assert trial_indices(records, 8, "g") == [0, 1, 2, 3, 5, 6, 7, 8]  # c runs out, a and b fill in
    assert trial_indices(records, 3) == [0, 1, 2]  # no group column: the first N
    assert trial_indices(records, 20, "g") == list(range(9))
    picked = trial_records(records, 5, "g")
    assert trial_records(picked, 5, "g") == picked  # a trial of a trial (make data LIMIT=N, then LIMIT=N) is itself
    assert describe_trial(records, 3, "g") == "LIMIT=3: 1 row of each of a, b, c (3 of 9 rows)"
    assert describe_trial(records, 5, "g") == "LIMIT=5: 2 of a, 2 of b, 1 of c (5 of 9 rows)"
    assert "no row of c" in describe_trial(records, 2, "g")  # fewer rows than groups: said
    assert describe_trial(records, 3) == "LIMIT=3: the first 3 of 9 rows"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/tiny where `make setup` built it, else a fresh one."""
    if (ROOT / "models" / "tiny" / "config.json").is_file():
        return ROOT / "models" / "tiny"
    from tools.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dir: Path) -> Path:
    """The judge sample as `jd` in tmp/data (12 test rows, 选择题 last), models/tiny beside it; the cwd is tmp."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_dir)
    files = ["--train", str(SAMPLES / "judge_train.csv"), "--test", str(SAMPLES / "judge_test.csv")]
    assert adapters_main(["judge", *files, "--task", "jd", "--tokenizer", "none"]) == 0
    return tmp_path


def ids(path: str | Path) -> list[str]:
    return [row["id"] for row in csv.DictReader(Path(path).open(encoding="utf-8"))]


class Answers(BaseHTTPRequestHandler):
    """An OpenAI chat server that answers "1" (a label of every judge dimension) n times."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = json.dumps({"choices": [{"message": {"content": "1"}}] * body.get("n", 1)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_a_judge_trial_takes_the_same_rows_of_every_dimension_in_every_stage(work, capsys, monkeypatch):
    # make data LIMIT=3: the converter's trial
    test_csv = str(SAMPLES / "judge_test.csv")
    assert adapters_main(["judge", "--test", test_csv, "--task", "jd", "--data-dir", "d3", "--limit", "3"]) == 0
    assert [r["id"] for r in json.loads(Path("d3/jd_test.json").read_text(encoding="utf-8"))] == TRIAL
    assert "jd_test limited: LIMIT=3: 1 row of each of 流畅性, 规范性, 选择题 (3 of 12 rows)" in capsys.readouterr().out

    trial = Path("predictions/jd/test-limit3")
    assert baseline_main(["--task", "jd", "--limit", "3"]) == 0
    assert ids(trial / "tfidf.csv") == TRIAL
    assert "1 row of each of 流畅性, 规范性, 选择题" in capsys.readouterr().out

    base = ["--model", "tiny", "--task", "jd", "--limit", "3", "adapter_name_or_path="]
    assert score_main([*base, "--batch-size", "4"]) == 0
    assert ids(trial / "tiny_score.csv") == TRIAL
    shown = "[score] LIMIT=3: 1 row of each of 流畅性, 规范性, 选择题 (3 of 12 rows) of jd_test"
    assert shown in capsys.readouterr().out

    assert pipeline_main(["predict", *base, "per_device_eval_batch_size=3", "max_new_tokens=2"]) == 0
    assert ids(trial / "tiny.csv") == TRIAL
    out = capsys.readouterr().out
    assert "[predict] LIMIT=3: 1 row of each of 流畅性, 规范性, 选择题" in out
    folder = Path("saves/jd/tiny/predict/trial/test-limit3")
    assert [r["id"] for r in json.loads((folder / "jd_test.json").read_text(encoding="utf-8"))] == TRIAL
    registry = json.loads(Path("data/dataset_info.json").read_text(encoding="utf-8"))["jd_test"]
    assert json.loads((folder / "dataset_info.json").read_text(encoding="utf-8")) == {"jd_test": registry}
    run_yaml = yaml.safe_load(Path("saves/jd/tiny/predict/run.yaml").read_text(encoding="utf-8"))
    assert run_yaml["dataset_dir"] == str(folder) and "max_samples" not in run_yaml

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("API_KEY", "EMPTY")
    try:
        assert sc_main([*base[:-1], "--samples", "2", "--port", str(server.server_address[1])]) == 0
    finally:
        server.shutdown()
    assert list(dict.fromkeys(ids(trial / "tiny_samples.csv"))) == TRIAL
    assert "[sc] LIMIT=3: 1 row of each of 流畅性, 规范性, 选择题" in capsys.readouterr().err

    # vote the trial's files, then submit the trial: the submission holds those rows, 选择题 included
    voted = "submissions/jd/test-limit3/voted.csv"
    files = [str(trial / "tfidf.csv"), str(trial / "tiny_score.csv")]
    assert voting_main(["vote", *files, "--task", "jd", "--tie-breaker", "tiny_score", "--out", voted]) == 0
    argv = ["submit", "--task", "jd", "--pred", voted, "--test", "data/jd_test.json"]
    assert voting_main([*argv, "--out", "submissions/jd/test-limit3/", "--limit", "3"]) == 0
    with Path("submissions/jd/test-limit3/submit.csv").open(encoding="gb18030") as handle:
        rows = list(csv.reader(handle))
    assert [row[0] for row in rows[1:]] == TRIAL


def test_chat_and_webchat_start_with_the_datasets_system_prompt(tmp_path, capsys):
    data = tmp_path / "qa"
    data.mkdir()
    system = "你是公考答题助手，请直接给出答案。"
    records = [
        {"id": str(i), "system": system, "instruction": f"问题{i}", "input": "", "output": "答"} for i in range(3)
    ]
    (data / "gk_train.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    entry = {"formatting": "alpaca", "task": "qa"}
    columns = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
    registry = {"gk_train": {"file_name": "gk_train.json", **entry, "columns": columns}}
    (data / "dataset_info.json").write_text(json.dumps(registry), encoding="utf-8")
    for command in ("chat", "webchat"):
        assert board_main([command, "--model", "tiny", "--task", "gk", "--data-dir", str(data), "--dry-run"]) == 0
        shown = shlex.split(capsys.readouterr().out.strip().splitlines()[-1])
        assert shown[shown.index("--default_system") + 1] == system
    # the user's own value wins
    argv = ["chat", "--model", "tiny", "--task", "gk", "--data-dir", str(data), "--dry-run", "default_system=你好"]
    assert board_main(argv) == 0
    shown = shlex.split(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown[shown.index("--default_system") + 1] == "你好"
    # rows that differ: the most common prompt, said
    records[0]["system"] = "另一个"
    (data / "gk_train.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    assert board_main(["chat", "--model", "tiny", "--task", "gk", "--data-dir", str(data), "--dry-run"]) == 0
    captured = capsys.readouterr()
    shown = shlex.split(captured.out.strip().splitlines()[-1])
    assert shown[shown.index("--default_system") + 1] == system
    assert "2 of 3" in captured.err
