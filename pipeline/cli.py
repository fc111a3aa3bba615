"""python -m pipeline {train,qlora,predict,export} --model M --task T [--data-dir DATA] [key=value ...]: the
datasets T_train / T_<split> of DATA/dataset_info.json; key=value pairs are LLaMA-Factory overrides, applied last."""

from __future__ import annotations

import sys

from pipeline.predict import predict
from pipeline.run import Run, stage_main, stage_parser
from pipeline.runs import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(
        "python -m pipeline", __doc__, stages=("train", "qlora", "predict", "export"), checkpoint=True
    )
    parser.add_argument("--fresh", action="store_true", help="train: move the old run aside and start over")
    parser.add_argument("--samples", type=int, default=1, help="predict: N sampled answers per row")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--dry-run", action="store_true", help="print the resolved YAML, run nothing")
    args = parser.parse_intermixed_args(argv)
    if args.checkpoint and args.stage in ("train", "qlora"):
        parser.error("--checkpoint (CHECKPOINT=) chooses the adapter predict and export read; train writes one")
    if args.stage == "predict":
        return stage_main(lambda: predict(Run.from_args(args), args.samples, args.temperature, args.dry_run))
    return stage_main(lambda: run_stage(Run.from_args(args), args.stage, args.fresh, args.dry_run))


if __name__ == "__main__":
    sys.exit(main())
