"""The supervised child process of a run: one process per run folder (a lock), the trainer in its own process group
with our signals forwarded, dying with us, and its progress printed as lines where stdout is a log file."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from pipeline.errors import RunError


def lock_path(out_dir: Path) -> Path:
    """saves/TASK/MODEL/.FOLDER.lock: the lock file of a run folder."""
    return out_dir.with_name(f".{out_dir.name}.lock")


def lock_holders(fd: int) -> list[str]:
    """The PIDs a lock file holds (the runner's, then its trainer's), as RunLock.note wrote them."""
    return os.pread(fd, 200, 0).decode(errors="replace").split()


def folder_held_by(out_dir: Path) -> str | None:
    """'PID n' while a run holds out_dir's lock (a shared lock is refused), else None (also without a lock file)."""
    import fcntl

    try:
        fd = os.open(lock_path(out_dir), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        holder = lock_holders(fd)
        return f"PID {holder[0]}" if holder else "another process"
    finally:
        os.close(fd)
    return None


class RunLock:
    """One process per run folder: an exclusive flock on saves/TASK/MODEL/.FOLDER.lock, holder PIDs written inside.

    The kernel releases the lock when every holder (the runner, and the trainer it passes the descriptor to) is
    dead, so a crashed run never blocks the next one.
    """

    def __init__(self, out_dir: Path, doing: str) -> None:
        import fcntl

        self.path = lock_path(out_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = lock_holders(self.fd)
            os.close(self.fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pids = f"PID {holder[0]}" if holder else "another process"
            if len(holder) > 1:
                pids += f" (llamafactory-cli PID {holder[1]})"
            raise RunError(
                f"{out_dir} is being {doing} by {pids}; wait for it to finish or stop it "
                f"(kill -INT {holder[0] if holder else 'PID'}); a second run here would share its files"
            ) from None
        self.note()

    def note(self, child: int | None = None) -> None:
        text = f"{os.getpid()}" + (f" {child}" if child else "") + "\n"
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode(), 0)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)


def _die_with_parent(parent: int) -> Any:
    """preexec_fn for the trainer: SIGTERM when the runner dies (Linux prctl PR_SET_PDEATHSIG), even by kill -9."""

    def preexec() -> None:
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(1)

    return preexec


def launch(command: list[str], env: dict[str, str], lock: RunLock) -> tuple[int, int | None]:
    """Run the trainer in its own process group, forwarding SIGINT/SIGTERM/SIGHUP to it; (exit code, signal)."""
    proc = subprocess.Popen(
        command, env=env, start_new_session=True, pass_fds=(lock.fd,), preexec_fn=_die_with_parent(os.getpid())
    )
    lock.note(proc.pid)
    received: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, forward) for signum in forwarded}
    try:
        while True:
            try:
                code = proc.wait()
                break
            except InterruptedError:
                continue
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code, received[0] if received else None


TRAINER_LOG = "trainer_log.jsonl"  # LLaMA-Factory's LogCallback: every 5 prediction steps (and each training log)


class ProgressLines(threading.Thread):
    """One printed line per entry LLaMA-Factory's LogCallback appends to OUT/trainer_log.jsonl while predicting.

    In a log file (stdout not a TTY) tqdm's redraws become thousands of lines; the runner turns tqdm off there
    (`disable_tqdm`) and prints these instead.
    """

    def __init__(self, path: Path, stage: str, every: float = 1.0):
        super().__init__(daemon=True)
        self.path, self.stage, self.every, self.offset = path, stage, every, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.drain()
        self.drain()

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)

    def drain(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
            try:
                log = json.loads(line)
                print(
                    f"[{self.stage}] {log['current_steps']}/{log['total_steps']} batches ({log['percentage']}%), "
                    f"{log.get('elapsed_time', '?')} elapsed, {log.get('remaining_time', '?')} left",
                    flush=True,
                )
            except (ValueError, KeyError, TypeError):
                continue


def log_friendly(config: dict[str, Any], stage: str, env: dict[str, str]) -> bool:
    """Where stdout is not a TTY: tqdm off (one progress line per update instead), quieter bars elsewhere.

    Returns whether the caller should print LLaMA-Factory's progress log (ProgressLines).
    """
    if sys.stdout.isatty() or stage == "export":
        return False
    config.setdefault("disable_tqdm", True)  # transformers' Trainer: PrinterCallback (one line per log) for tqdm
    env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TQDM_MININTERVAL", "30")  # any other bar (checkpoint shards, …) redraws at most twice a minute
    return stage == "predict"


def cli_command(stage: str, run_yaml: Path) -> list[str]:
    """Training runs pipeline/train_entry.py (`llamafactory-cli train` with the output layer only on answer
    positions); prediction and export run llamafactory-cli itself."""
    if stage in ("train", "qlora"):
        return [sys.executable, "-m", "pipeline.train_entry", str(run_yaml)]
    cli = Path(sys.executable).with_name("llamafactory-cli")
    return [str(cli), "export" if stage == "export" else "train", str(run_yaml)]
