"""Every ```bash block of README.md and docs/*.md, run as written (issue #22): each block's lines, in order, by
`bash -e` in a fresh work dir of its own that looks like a checkout (the Makefile, .venv, models/, data/samples/),
with the raw files its commands name, cut to a few dozen rows, from ../shared/data.

| block | run | why not / what stands in |
|---|---|---|
| README.md, `make demo` / `make test` | `make demo` only | `make test` is the whole suite, this test included (it would run itself); the suite is what runs it |
| docs/scale-out.md, "Training on several GPUs or nodes" | skipped | 8 GPUs and 2 nodes (ZeRO-3 across GPUs, Ray's GPU bundles); the CPU forms run in tests/test_launchers.py |
| docs/scale-out.md, "Label scoring on N processes" | skipped | 8 GPUs and 2 nodes; the CPU form (2 gloo ranks) runs in tests/test_sharded_scoring.py |
| every other block | as written | |

What makes "as written" possible on a CPU, without a line changed:
- the seed presets name hub ids (`Qwen/Qwen2-7B-Instruct`, ...) or `models/internlm2_5`; LLaMA-Factory loads a local
  folder of that relative path when there is one, so each work dir holds the preset's tiny random twin there
  (tests/tiny_arch.py: its class, config shape and chat tokens); `make demo`'s SmolLM2 is models/tiny (the same
  `smollm2` template), the other blocks use the embedded models as they are;
- sizes come through the environment, which make reads and a command line overrides: `ARGS` (exported by the
  Makefile to every CLI) holds one step, batch 1 and 8 new tokens, `PORT` a free port, `MODELS` two of the seed's
  four (train-all, predict-all), `FOLDS` 2 and `TRIALS` 2 (the pages leave those to their defaults, 5 and 20);
  `make runs` takes no LLaMA-Factory keys (its ARGS is `--json`), so its line runs with ARGS unset; a `make sweep`
  line gets a one-step search space (`SPACE=`, the preset's spaces set max_steps in the hundreds) and ARGS without
  max_steps, the key the space decides;
- a line that starts a server in the foreground (`make webui`, `make webchat`) runs in the background until its port
  answers, then is stopped (its ARGS: max_new_tokens only, the keys a chat takes); a server a line starts with `&`
  is stopped when its block ends;
- raw files: the real ones from ../shared/data (README: the names a user has, `train.csv`, `test_A.csv`, ...; a docs
  page's `../shared/data/...` paths resolve beside the work dir), cut to a few dozen rows (judge: every dimension);
  iFLYTEK's labelled train.csv is not public, so it is the A board's papers with a label column added.

Each block must exit 0, with no make error inside an `&&` list (which `bash -e` lets pass), and leave every file a
comment promises (`→ submissions/judge/{voted.csv,submit.csv}`).
`make help` must list every target the blocks use.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

# Two blocks at a time: a block's stages run one after another on one thread each (OMP_NUM_THREADS=1), so a second
# block uses the other core. Every block as written takes ~25 min of one core on this 2-core machine.
WORKERS = int(os.environ.get("LLMCOMP_BLOCK_WORKERS", "2"))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# (page, section heading) → why the block cannot run here
SKIPPED = {
    ("docs/scale-out.md", "Training on several GPUs or nodes: torchrun, DeepSpeed, Ray"): (
        "8 GPUs / 2 nodes (ZeRO-3 across GPUs, Ray's GPU bundles); the CPU forms run in tests/test_launchers.py"
    ),
    ("docs/scale-out.md", "Label scoring on N processes"): (
        "8 GPUs / 2 nodes; the CPU form (2 gloo ranks) runs in tests/test_sharded_scoring.py"
    ),
    ("docs/scale-out.md", "Cross-validation folds on several GPUs or machines"): (
        "one fold per GPU (CUDA_VISIBLE_DEVICES, `...` for the others); FOLD=k one at a time, a resumed fold and the "
        "OOF file written once all are finished run in tests/test_cv.py"
    ),
    ("docs/scale-out.md", "Sweeps on several machines: one Optuna study"): (
        "a PostgreSQL server on 10.0.0.1; two processes sharing one SQLite study run in tests/test_sweep.py"
    ),
    ("docs/ensembles.md", "Measured: CoLA and logic"): (
        "the real-data measurement (an hour of 2-core training, docs/measured.md); the same commands on the tiny "
        "model run in tests/test_cv.py and the block above"
    ),
    ("docs/selection.md", "Measured: a CoLA sweep with SmolLM2"): (
        "the real-data measurement (40 minutes of 2-core training, docs/measured.md); a sweep on the tiny model "
        "runs in tests/test_sweep.py and the blocks above"
    ),
}
# lines left out of a block that runs, and why
LEFT_OUT = {"make test": "the whole suite, this test included: it would run itself"}
# a block whose line fails for a bug in the code, not in the page: (page, heading, first line) → the bug
XFAIL: dict[tuple[str, str, str], str] = {}

# the seed presets' model_name_or_path (factory_configs/*/lora_sft.yaml) → the twin that stands there
TWINS = {
    "qwen2": "Qwen/Qwen2-7B-Instruct",
    "glm4": "ZhipuAI/glm-4-9b-chat-hf",
    "internlm2_5": "models/internlm2_5",
    "gemma2": "LLM-Research/gemma-2-9b-it",
    "gemma": "AI-ModelScope/gemma-2b",
}
# a random model's answers rarely parse: every row may abstain, and a row no model parsed gets a label valid in
# every group of the task (judge: 1 is a score and a 选择题 answer); free-text tasks have no unparsed rows
UNPARSED = {"judge": "1", "logic": "A", "paper": "1", "cola": "1"}
# one step, batch 1, short answers: what every block's make gets where its own line gives no ARGS
SMALL_ARGS = (
    "max_steps=1 per_device_train_batch_size=1 gradient_accumulation_steps=1 save_steps=1 logging_steps=1 "
    "preprocessing_num_workers=1 dataloader_num_workers=0 per_device_eval_batch_size=8 max_new_tokens=8"
)
CHAT_ARGS = "max_new_tokens=8"
SERVERS = re.compile(r"^(?:\w+=\S+\s+)*make\s+(webui|webchat|chat|tracking-ui)\b")  # foreground servers (no &)
# targets whose ARGS takes no sizes: runs (its ARGS is --json), export (LLaMA-Factory's export parser refuses
# training and generation keys)
NO_ARGS = re.compile(r"^(?:\w+=\S+\s+)*make\s+(runs|export)\b")
# a sweep decides the keys of its space (a preset's may set max_steps: 500-1500), and refuses them in ARGS: its
# lines get a space of one step (SPACE=, which make reads from the environment) and ARGS without max_steps
SWEEPS = re.compile(r"^(?:\w+=\S+\s+)*make\s+sweep\b")
SWEEP_SPACE = "max_steps: 1\nlearning_rate: {low: 1.0e-4, high: 1.0e-3, log: true}\n"
# sizes the pages leave to make's defaults (FOLDS 5, TRIALS 20, the seed's four MODELS), smaller here
SIZES = {"MODELS": "qwen2 glm4", "FOLDS": "2", "TRIALS": "2"}
PROMISE = re.compile(r"→\s*(\S+)")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repo root
    heading: str  # the section it stands under
    lines: tuple[str, ...]

    index: int  # its place on the page

    @property
    def id(self) -> str:
        title = self.lines[0] if self.heading == TITLES.get(self.page) else self.heading  # under the page's title
        words = re.findall(r"[a-z][a-z0-9-]+", title.lower())[:2]
        return f"{Path(self.page).stem}:{self.index}-{'-'.join(words)}"


def read_blocks() -> list[Block]:
    """Every ```bash block; the README's per-competition block is one block per `# N.` section (each competition
    has its own raw files, and two of them are called train.csv)."""
    blocks = []
    for doc in DOCS:
        heading, fence = doc.stem, None
        for line in doc.read_text(encoding="utf-8").splitlines():
            if fence is None:
                if line.startswith("#"):
                    heading = line.lstrip("#").strip()
                elif line.strip() == "```bash":
                    fence = []
            elif line.strip() == "```":
                page = str(doc.relative_to(ROOT))
                sections: list[list[str]] = [[]]
                for text in fence:
                    if re.match(r"# \d+\. ", text) and sections[-1]:
                        sections.append([])
                    sections[-1].append(text)
                for section in sections:
                    title = section[0][2:] if re.match(r"# \d+\. ", section[0]) else heading
                    blocks.append(Block(page, title, tuple(section), sum(b.page == page for b in blocks)))
                fence = None
            else:
                fence.append(line)
    return blocks


BLOCKS = read_blocks()
TITLES = {str(doc.relative_to(ROOT)): doc.read_text(encoding="utf-8").split("\n", 1)[0].lstrip("# ") for doc in DOCS}


def commands(block: Block) -> list[str]:
    return [line for line in block.lines if line.strip() and not line.lstrip().startswith("#")]


def promises(block: Block) -> list[str]:
    """The paths the comments promise (`→ a/b/{c,d}` is a/b/c and a/b/d); words without a folder are not paths."""
    found = []
    for line in block.lines:
        if "#" not in line:
            continue
        for target in PROMISE.findall(line.split("#", 1)[1]):
            target = target.rstrip(",.;:")
            if "/" not in target:
                continue
            brace = re.match(r"(.*)\{(.*)\}(.*)", target)
            parts = brace.group(2).split(",") if brace else [""]
            found += [f"{brace.group(1)}{p}{brace.group(3)}" if brace else target for p in parts]
    return found


# ---------------------------------------------------------------- raw files, cut to a few dozen rows


def head_lines(src: Path, dst: Path, n: int, header: int = 0) -> None:
    """The first `header` + n lines of a line-based file (TSV, JSONL), bytes as they are."""
    with src.open("rb") as handle:
        dst.write_bytes(b"".join(itertools.islice(handle, header + n)))


def judge_csv(src: Path, dst: Path, per_dimension: int) -> None:
    """The first rows of each 评判维度 (so a trial covers 选择题 too), GB18030 as the competition's files."""
    rows = list(csv.reader(io.StringIO(src.read_bytes().decode("gb18030"), newline="")))
    header, body = rows[0], rows[1:]
    dimension = header.index("评判维度")
    kept = []
    for value in dict.fromkeys(row[dimension] for row in body):
        kept += [row for row in body if row[dimension] == value][:per_dimension]
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows([header, *kept])
    dst.write_bytes(out.getvalue().encode("gb18030"))


def paper_train(src: Path, dst: Path, n: int, skip: int) -> None:
    """The labelled train.csv's layout (uuid,title,author,abstract,Keywords,label) from the A board's papers after
    the first `skip` (test.csv, the dev file, holds those)."""
    with src.open(encoding="utf-8", newline="") as handle:
        rows = list(itertools.islice(csv.DictReader(handle), skip, skip + n))
    with dst.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, [*rows[0].keys(), "label"])
        writer.writeheader()
        writer.writerows({**row, "label": i % 2} for i, row in enumerate(rows))


def shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"real competition file {path} not found (check out ../shared)")
    return path


# the raw files of each adapter's README lines: file name → how to make it from ../shared/data
KITS = {
    "judge": {
        "train.csv": lambda d: judge_csv(shared("df1032/train_fluency_1200.csv"), d, 24),
        "test_A.csv": lambda d: judge_csv(shared("df1032/test_A.csv"), d, 6),
    },
    "logic": {
        "round1_train_data.jsonl": lambda d: head_lines(shared("logic/round1_train_data.jsonl"), d, 8),
        "round1_test_data.jsonl": lambda d: head_lines(shared("logic/round1_test_data.jsonl"), d, 4),
    },
    "paper": {
        "train.csv": lambda d: paper_train(shared("iflytek/test.csv"), d, 24, skip=12),
        "test.csv": lambda d: head_lines(shared("iflytek/test.csv"), d, 12, header=1),
        "testB.csv": lambda d: head_lines(shared("iflytek/testB.csv"), d, 12, header=1),
    },
    "qa": {"output.jsonl": lambda d: head_lines(shared("gongkao/output.jsonl"), d, 40)},
    "cola": {
        "in_domain_train.tsv": lambda d: head_lines(shared("cola/in_domain_train.tsv"), d, 40),
        "in_domain_dev.tsv": lambda d: head_lines(shared("cola/in_domain_dev.tsv"), d, 24),
    },
}
# a docs page's ../shared/data/... paths: cut copies beside the work dir
SHARED_CUTS = {
    "df1032/train_fluency_1200.csv": lambda s, d: judge_csv(s, d, 24),
    "df1032/test_A.csv": lambda s, d: judge_csv(s, d, 6),
}


def adapter_of(block: Block) -> str | None:
    for line in commands(block):
        if re.match(r"(?:\w+=\S+\s+)*make data\b", line):
            words = dict(re.findall(r"\b(ADAPTER|TASK)=(\S+)", line))
            return words.get("ADAPTER") or words.get("TASK")
    return None


# ---------------------------------------------------------------- the work dir


@pytest.fixture(scope="session")
def twins(tmp_path_factory) -> Path:
    """Each seed preset's tiny twin at its model_name_or_path, built once (offline, seconds)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_arch import build_tiny_arch

    folder = tmp_path_factory.mktemp("twins")
    for model, path in TWINS.items():
        build_tiny_arch(model, folder / path)
    return folder


def work_dir(tmp_path: Path, block: Block, twins: Path) -> Path:
    """A folder that looks like a checkout to make (Makefile, .venv, models/, data/samples/) + the block's raw files."""
    work = tmp_path / "repo"
    (work / "models").mkdir(parents=True)
    (work / "Makefile").symlink_to(ROOT / "Makefile")
    (work / ".venv").symlink_to((ROOT / ".venv").resolve())
    for name in ("pyproject.toml", "constraints.txt"):  # older than .venv/.installed: make never reinstalls
        (work / name).touch()
        os.utime(work / name, (946684800, 946684800))
    (work / "data").mkdir()
    (work / "data/samples").symlink_to(ROOT / "data/samples")
    for model in ("smollm2", "gemma3", "tiny"):
        source = ROOT / "models" / ("tiny" if block.lines[0].startswith("make demo") else model)
        if not (source / "config.json").is_file():
            pytest.skip(f"{source} missing: `make setup` builds it")
        (work / "models" / model).symlink_to(source.resolve())
    for path in TWINS.values():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).symlink_to(twins / path)
    (work / "sweep_space.yaml").write_text(SWEEP_SPACE, encoding="utf-8")
    for name, make_file in KITS.get(adapter_of(block) or "", {}).items():
        make_file(work / name)
    for relative in sorted(set(re.findall(r"\.\./shared/data/(\S+)", "\n".join(commands(block))))):
        source, target = shared(relative), tmp_path / "shared/data" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        SHARED_CUTS.get(relative, lambda s, d: shutil.copyfile(s, d))(source, target)
    return work


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# a foreground server: in the background until its port answers (or it dies: the block fails), then stopped
UNTIL_UP = r"""
until_up() {
  local pid=$1 port=$2
  for _ in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "[test] port $port answers"; stop_tree "$pid"; return 0; fi
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; echo "[test] the server exited before its port answered"; return 1; }
    sleep 0.5
  done
  echo "[test] port $port silent for 300 s"; stop_tree "$pid"; return 1
}
stop_tree() { local c; for c in $(pgrep -P "$1"); do stop_tree "$c"; done; kill "$1" 2>/dev/null || true; }
"""


def script(block: Block, port: int) -> str:
    out = ["set -e", UNTIL_UP]
    for line in block.lines:
        command = line.split(" #", 1)[0].strip()
        if command and not command.startswith("#") and not line.startswith(" "):  # the log says when each began
            out.append(f"echo {shlex.quote('[test +') + '${SECONDS}s' + shlex.quote('] ' + command)}")
        if command in LEFT_OUT:
            out.append(f"# left out ({LEFT_OUT[command]}): {line}")
        elif NO_ARGS.match(command):
            out.append(f"ARGS= {line}")
        elif SWEEPS.match(command):
            small = " ".join(word for word in SMALL_ARGS.split() if not word.startswith("max_steps="))
            out.append(f"ARGS={shlex.quote(small)} SPACE=sweep_space.yaml {line}")
        elif SERVERS.match(command) and not command.endswith("&"):
            # a chat server takes inference keys only (LLaMA-Factory's infer parser refuses max_steps & co.)
            out += ["{", f"export ARGS={shlex.quote(CHAT_ARGS)}", line, "} &", f"until_up $! {port}"]
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def run_block(block: Block, work: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # this checkout's code in every CLI the Makefile runs
        "DISABLE_VERSION_CHECK": "1",
        "ARGS": SMALL_ARGS,
        "PORT": str(port),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",  # docs/measured.md: two OpenMP threads wait for each other on a shared CPU
        "MAX_UNPARSED": "100%",
        **SIZES,
    }
    if adapter_of(block) in UNPARSED:
        env["UNPARSED"] = UNPARSED[adapter_of(block) or ""]
    env.pop("TRACK", None)  # as a user runs them: make's default, tracking on (the suite turns it off elsewhere)
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    (work / "block.sh").write_text(script(block, port), encoding="utf-8")
    log = work / "block.log"
    with log.open("w", encoding="utf-8") as handle:
        proc = subprocess.Popen(
            ["bash", "block.sh"], cwd=work, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):  # a server a line started with `&`
                os.killpg(proc.pid, signal.SIGTERM)
                time.sleep(1)
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text(encoding="utf-8"), "")


# ---------------------------------------------------------------- the tests


def test_every_block_is_found_and_accounted_for():
    pages = {block.page for block in BLOCKS}
    assert {"README.md", "docs/workflows.md", "docs/scale-out.md"} <= pages
    readme = [block for block in BLOCKS if block.page == "README.md"]
    assert len(readme) == 8  # demo/test, the GPU block, the five competitions, comparing runs
    assert set(SKIPPED) <= {(block.page, block.heading) for block in BLOCKS}
    for block in BLOCKS:
        assert commands(block), block.id


def test_make_help_lists_every_target_the_blocks_use():
    help_text = subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    listed = set(re.findall(r"^  make (\S+)", help_text, re.M))
    used = {
        target
        for block in BLOCKS
        for line in commands(block)
        for target in re.findall(r"(?:^|&&\s*|\s)make\s+([a-z][\w-]*)", line)
    }
    assert used and used <= listed, used - listed


@pytest.fixture(scope="session")
def block_runs(request, tmp_path_factory, twins) -> Iterator[dict[str, Future]]:
    """Every selected block that runs, started WORKERS at a time on the first test's call: {block id: its future
    (work dir, finished process)}. A skip or an error while making its work dir comes out of its future."""
    selected = [
        item.callspec.params["block"]
        for item in request.session.items
        if item.originalname == "test_block_runs_as_written" and hasattr(item, "callspec")
    ]
    runnable = [block for block in selected if (block.page, block.heading) not in SKIPPED]

    def run(block: Block) -> tuple[Path, subprocess.CompletedProcess]:
        work = work_dir(tmp_path_factory.mktemp(re.sub(r"\W+", "_", block.id)), block, twins)
        return work, run_block(block, work)

    pool = ThreadPoolExecutor(max_workers=WORKERS)
    try:
        yield {block.id: pool.submit(run, block) for block in runnable}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # an interrupted session: the blocks not started never start


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_block_runs_as_written(block, block_runs, request):
    if (block.page, block.heading) in SKIPPED:
        pytest.skip(SKIPPED[block.page, block.heading])
    key = (block.page, block.heading, block.lines[0])
    if key in XFAIL:
        request.applymarker(pytest.mark.xfail(reason=XFAIL[key], strict=True))
    work, proc = block_runs[block.id].result()
    assert proc.returncode == 0, f"{block.id} failed:\n{script(block, 0)}\n...\n{proc.stdout[-6000:]}"
    # `a && b && c` does not stop bash -e when a or b fails: make's own error line says that one did
    failed = [  # a server the test stopped is make's "Terminated", not a failure
        line for line in re.findall(r"^make(?:\[\d+\])?: \*\*\* .*$", proc.stdout, re.M) if "Terminated" not in line
    ]
    assert not failed, f"{block.id}: a command failed inside an && list: {failed}\n{proc.stdout[-6000:]}"
    missing = [path for path in promises(block) if not (work / path).exists()]
    assert not missing, f"{block.id}: promised but not written: {missing}\n{proc.stdout[-3000:]}"
