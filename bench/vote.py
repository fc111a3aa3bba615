"""Four-way vote of 1,000,000 ids: the project's vectorised core (voting.rules.plurality_vote, the function the CLI
uses) against the seed's row-by-row collections.Counter loop, on the same labels; checks both agree.

    .venv/bin/python bench/vote.py [--rows 1000000] [--seed 0] [--csv]

Prints one JSON line. With --csv it also times the CLI path from four temp CSV files (read + extract + vote).
"""

from __future__ import annotations

import argparse
import contextlib
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


def time_csv_path(codes: np.ndarray, tie_breaker: int) -> float:
    """Seconds for `python -m voting vote` in-process from CSV files (read, extract, vote, write)."""
    import pandas as pd

    from voting.__main__ import main

    with tempfile.TemporaryDirectory() as tmp:
        ids = np.char.add("id", np.arange(codes.shape[0]).astype(str))
        paths = []
        for m in range(codes.shape[1]):
            path = Path(tmp) / f"model{m}.csv"
            pd.DataFrame({"id": ids, "prediction": np.array(LABELS)[codes[:, m]]}).to_csv(path, index=False)
            paths.append(str(path))
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the CLI's own summary line is not the bench's
            rc = main(["vote", *paths, "--labels", ",".join(LABELS), "--tie-breaker", f"model{tie_breaker}",
                       "--out", str(Path(tmp) / "voted.csv")])
        elapsed = time.perf_counter() - start
        if rc != 0:
            raise SystemExit(f"the CLI vote failed with status {rc}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", action="store_true", help="also time the CLI path from CSV files")
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
        "bench": "vote", "rows": args.rows, "models": 4,
        "vectorised_s": round(vectorised_s, 4), "counter_loop_s": round(counter_s, 4),
        "speedup": round(counter_s / vectorised_s, 1), "identical": identical,
        "tie_breaker_share": round(float((result.decided_by != 0).mean()), 4),
    }
    if args.csv:
        figures["cli_from_csv_s"] = round(time_csv_path(codes, tie_breaker), 3)
    print(json.dumps(figures))
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
