"""Four-way vote of 1,000,000 ids: the project's vectorised core (voting.rules.plurality_vote, the function the CLI
uses) against the seed's row-by-row collections.Counter loop, on the same labels; checks both agree. Then the whole
CLI (`llmcomp vote` in-process: read four CSV files, check, extract, vote, write voted.csv atomically) with the
columnar reader and writer (pyarrow.csv) next to the same CLI on pandas' parser and writer; both outputs must be
byte-identical. Wall and CPU seconds (the CPU figure is steadier on a shared machine).

    .venv/bin/python bench/vote.py [--rows 1000000] [--seed 0] [--no-csv]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from voting.rules import plurality_vote

LABELS = ("1", "2", "3", "4", "5")


def counter_four_way_vote(rows: list[tuple[str, str, str, str]], tie_breaker: int) -> list[str]:
    """The seed's rule, one row at a time: 3+ votes win, a lone pair wins, else the tie-breaker's label."""
    out = []
    for votes in rows:
        ranked = Counter(votes).most_common()
        top_label, top = ranked[0]
        if top >= 3 or (top == 2 and len(ranked) == 3):  # 4-0, 3-1, or 2-1-1
            out.append(top_label)
        else:
            out.append(votes[tie_breaker])
    return out


def correlated_codes(rows: int, models: int, seed: int) -> np.ndarray:
    """Scores like real judges': each model is the truth ±1 most of the time, so every branch of the rule occurs."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(LABELS), rows)
    noise = rng.choice([-1, 0, 0, 1], size=(rows, models))
    return np.clip(truth[:, None] + noise, 0, len(LABELS) - 1).astype(np.int64)


def time_csv_path(codes: np.ndarray, tie_breaker: int) -> dict:
    """Seconds for `python -m voting vote` in-process from CSV files (read, check, extract, vote, write), with the
    columnar reader/writer and with pandas' (the fast paths switched off); whether both wrote the same bytes."""
    import pandas as pd

    import core.fileio
    import voting.predictions
    from voting.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        ids = np.char.add("id", np.arange(codes.shape[0]).astype(str))
        paths = []
        for m in range(codes.shape[1]):
            path = Path(tmp) / f"model{m}.csv"
            pd.DataFrame({"id": ids, "prediction": np.array(LABELS)[codes[:, m]]}).to_csv(path, index=False)
            paths.append(str(path))
        seconds, cpu, outputs = {}, {}, {}
        _warm_up(Path(tmp), tie_breaker)
        for way in ("columnar", "pandas"):
            out = Path(tmp) / f"voted_{way}.csv"
            with contextlib.ExitStack() as stack:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))  # the CLI's summary is not ours
                if way == "pandas":
                    stack.enter_context(
                        _patched(voting.predictions, "_arrow_frame", lambda data, same_ids: (None, False))
                    )
                    stack.enter_context(_patched(core.fileio, "_plain_string_table", lambda frame: None))
                start, start_cpu = time.perf_counter(), time.process_time()
                rc = main(
                    [
                        "vote",
                        *paths,
                        "--labels",
                        ",".join(LABELS),
                        "--tie-breaker",
                        f"model{tie_breaker}",
                        "--out",
                        str(out),
                    ]
                )
                seconds[way], cpu[way] = time.perf_counter() - start, time.process_time() - start_cpu
            if rc != 0:
                raise SystemExit(f"the CLI vote ({way}) failed with status {rc}")
            outputs[way] = out.read_bytes()
    return {
        "cli_from_csv_s": round(seconds["columnar"], 3),
        "cli_pandas_csv_s": round(seconds["pandas"], 3),
        "cli_from_csv_cpu_s": round(cpu["columnar"], 3),
        "cli_pandas_csv_cpu_s": round(cpu["pandas"], 3),
        "cli_speedup": round(seconds["pandas"] / seconds["columnar"], 1),
        "cli_same_bytes": outputs["columnar"] == outputs["pandas"],
    }


def _warm_up(tmp: Path, tie_breaker: int) -> None:
    """One tiny vote first, so neither timed way pays the one-time imports (pyarrow.csv, the task registry)."""
    from voting.cli import main

    paths = []
    for m in range(4):
        paths.append(str(tmp / "warm" / f"model{m}.csv"))
        Path(paths[-1]).parent.mkdir(exist_ok=True)
        Path(paths[-1]).write_text("id,prediction\na,1\nb,2\n", encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()):
        main(
            [
                "vote",
                *paths,
                "--labels",
                ",".join(LABELS),
                "--tie-breaker",
                f"model{tie_breaker}",
                "--out",
                str(tmp / "warm" / "voted.csv"),
            ]
        )


@contextlib.contextmanager
def _patched(module, name: str, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-csv", action="store_true", help="time the core only, not the CLI from CSV files")
    args = parser.parse_args()
    tie_breaker = 0
    codes = correlated_codes(args.rows, 4, args.seed)

    start = time.perf_counter()
    result = plurality_vote(codes, len(LABELS), tie_breaker)
    vectorised_s = time.perf_counter() - start

    rows = [tuple(LABELS[c] for c in row) for row in codes.tolist()]  # the seed held strings, so the loop gets them
    start = time.perf_counter()
    reference = counter_four_way_vote(rows, tie_breaker)
    counter_s = time.perf_counter() - start

    identical = [LABELS[c] for c in result.winner] == reference
    figures = {
        "bench": "vote",
        "rows": args.rows,
        "models": 4,
        "vectorised_s": round(vectorised_s, 4),
        "counter_loop_s": round(counter_s, 4),
        "speedup": round(counter_s / vectorised_s, 1),
        "identical": identical,
        "tie_breaker_share": round(float((result.decided_by != 0).mean()), 4),
    }
    if not args.no_csv:
        del rows, reference  # a million live tuples would make every garbage collection during the CLI slower
        gc.collect()
        figures.update(time_csv_path(codes, tie_breaker))
    print(json.dumps(figures))
    if not identical or not figures.get("cli_same_bytes", True):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
