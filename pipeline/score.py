"""python -m pipeline.score --model M --task T [--split S] [--calibrate] [--nproc N] [key=value ...]: label scoring
(`llmcomp score`, `make predict MODE=score`) in this process, or on N torchrun ranks (pipeline/sharded_scoring.py)."""

from __future__ import annotations

import os
import sys

from pipeline import label_scoring
from pipeline.run import stage_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = label_scoring.build_parser().parse_intermixed_args(argv)

    def score() -> None:
        if args.nproc > 1 or int(os.environ.get("NNODES", "1")) > 1:
            from pipeline.sharded_scoring import launch

            print(label_scoring.summary(launch(argv, args.nproc)))
        else:
            print(label_scoring.summary(label_scoring.run(args)))

    return stage_main(score)


if __name__ == "__main__":
    sys.exit(main())
