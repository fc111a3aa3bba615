"""Label scoring on N processes under torchrun: `make predict MODE=score NPROC=N` (`llmcomp score --nproc N`).

    llmcomp score --model qwen2 --task judge --nproc 8 [--calibrate] [key=value ...]
    NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 llmcomp score ... --nproc 8   (and NODE_RANK=1)

`launch` starts torchrun's own agent (torch.distributed.run) with `python -m pipeline.sharded_scoring` on every rank.
Each rank runs pipeline.label_scoring.run unchanged except for two hooks: the rows it scores and whether it writes.
Rows are split into length-balanced shards (longest prompts first, each to the shard with the fewest prompt tokens
so far); a rank scores its shard, writes it atomically to saves/TASK/MODEL/score/parts/rank{R}_{rows|calibration}.json
(ids and log-likelihoods), and waits at a barrier (gloo). Then every rank reads all parts and puts them back in
row order by id, so the calibration (fitted on the train slice, exactly as in one process) is the same on every
rank; only rank 0 writes predictions/TASK/MODEL_score.csv, the raw CSV and the report. A rank that fails stops the
run: torchrun ends the others, nothing is merged, and the error names the rank. Several nodes need the parts folder
on a shared filesystem (the same working directory).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.fileio import atomic_write_json
from pipeline import label_scoring
from pipeline.errors import RunError
from pipeline.run import Run
from pipeline.scoring_engine import score_encoded


def balanced_shards(lengths: Sequence[int], shards: int) -> list[list[int]]:
    """Row indices per shard (each in row order): longest first, each row to the shard with the least tokens."""
    totals = [0] * shards
    out: list[list[int]] = [[] for _ in range(shards)]
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        target = min(range(shards), key=lambda s: (totals[s], len(out[s]), s))
        out[target].append(index)
        totals[target] += lengths[index] + 1  # +1: a row costs something even when its prompt is short
    return [sorted(rows) for rows in out]


class ShardedScores:
    """label_scoring.run's `scores_of` hook on one rank: score this rank's shard, share it through the parts folder."""

    def __init__(self, parts: Path, rank: int, world: int):
        self.parts, self.rank, self.world = parts, rank, world
        self.report: dict[str, Any] = {"shards": {"processes": world}}

    def __call__(
        self, scorer, records: Sequence[dict], encoded: Sequence[Any], batch_size: int, kind: str
    ) -> list[np.ndarray]:
        import torch.distributed as dist

        mine = balanced_shards([len(e.prompt) for e in encoded], self.world)[self.rank]
        start = time.perf_counter()
        scores = score_encoded(scorer.model, [encoded[i] for i in mine], batch_size, scorer.pad_id)
        atomic_write_json(
            self.parts / f"rank{self.rank}_{kind}.json",
            {
                "rank": self.rank,
                "seconds": round(time.perf_counter() - start, 3),
                "prompt_tokens": sum(len(encoded[i].prompt) for i in mine),
                "ids": [str(records[i]["id"]) for i in mine],
                "scores": [s.tolist() for s in scores],
            },
        )
        dist.barrier()
        merged, shards = merge_parts(self.parts, kind, self.world, [str(r["id"]) for r in records])
        self.report["shards"][kind] = shards
        return merged


def merge_parts(parts: Path, kind: str, world: int, ids: Sequence[str]) -> tuple[list[np.ndarray], list[dict]]:
    """Every rank's part of `kind`, back in `ids` order; RunError when a part is missing or an id is not once."""
    by_id: dict[str, np.ndarray] = {}
    shards = []
    for rank in range(world):
        path = parts / f"rank{rank}_{kind}.json"
        if not path.is_file():
            raise RunError(f"rank {rank} wrote no {path}")
        part = json.loads(path.read_text(encoding="utf-8"))
        for row_id, scores in zip(part["ids"], part["scores"], strict=True):
            if row_id in by_id:
                raise RunError(f"id {row_id} scored twice (again by rank {rank}, {path}); ids must be unique")
            by_id[row_id] = np.asarray(scores, dtype=float)
        shards.append({key: part[key] for key in ("rank", "seconds", "prompt_tokens")} | {"rows": len(part["ids"])})
    missing = [i for i in ids if i not in by_id]
    if missing or len(by_id) != len(ids):
        raise RunError(f"the parts in {parts} do not cover the {kind}: {len(missing)} ids missing ({missing[:5]})")
    return [by_id[i] for i in ids], shards


def rank_main(argv: Sequence[str]) -> int:
    """One torchrun rank: label_scoring.run with this rank's shard; rank 0 writes the merged outputs."""
    import torch.distributed as dist

    args = label_scoring.build_parser().parse_intermixed_args(list(argv))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    parts = Run.from_args(args).stage_dir("score") / "parts"
    if rank == 0:
        shutil.rmtree(parts, ignore_errors=True)  # an earlier run's parts must not be merged into this one
        parts.mkdir(parents=True)
    dist.barrier()
    try:
        label_scoring.run(args, scores_of=ShardedScores(parts, rank, world), write=rank == 0)
    except RunError as err:
        print(f"error: rank {rank}: {err}", file=sys.stderr)
        raise
    dist.barrier()  # every rank has read the parts
    if rank == 0:
        shutil.rmtree(parts, ignore_errors=True)
    dist.destroy_process_group()
    return 0


def without_nproc(argv: Sequence[str]) -> list[str]:
    """The scoring arguments minus `--nproc N`: torchrun's parser would take it for its own --nproc-per-node."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def torchrun_arguments(argv: Sequence[str], nproc: int, env: dict[str, str]) -> list[str]:
    """torchrun's flags from NNODES / NODE_RANK / MASTER_ADDR / MASTER_PORT (the train launchers' variables), then
    the module and the scoring arguments."""
    nnodes = int(env.get("NNODES", "1"))
    if nnodes > 1:
        if "MASTER_ADDR" not in env:
            raise RunError("NNODES > 1 needs MASTER_ADDR (and MASTER_PORT) of node 0, as for train")
        node = [
            f"--nnodes={nnodes}",
            f"--node-rank={env.get('NODE_RANK', '0')}",
            f"--master-addr={env['MASTER_ADDR']}",
            f"--master-port={env.get('MASTER_PORT', '29500')}",
        ]
    else:
        node = ["--standalone"]
    return [*node, f"--nproc-per-node={nproc}", "-m", "pipeline.sharded_scoring", *without_nproc(argv)]


def launch(argv: Sequence[str], nproc: int) -> dict:
    """Run the ranks through torchrun's agent; the merged report, or RunError naming the first rank that failed."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = label_scoring.build_parser().parse_intermixed_args(list(argv))
    flags = torchrun_arguments(argv, nproc, dict(os.environ))
    print(f"[score] torchrun {' '.join(flags[: flags.index('-m') + 2])} ...", flush=True)
    try:
        run(parse_args(flags))
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        message = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
        last = message.strip().splitlines()[-1] if message.strip() else "no Python error recorded (killed or crashed)"
        raise RunError(
            f"rank {rank} failed ({how}): {last}; no merged predictions were written (its log is above)"
        ) from None
    report_path = Run.from_args(args).stage_dir("score") / "report.json"
    return json.loads(report_path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    sys.exit(record(rank_main)(sys.argv[1:]))
