"""python -m pipeline {train,qlora,predict,export} --model M --task T [--data-dir DATA] [key=value ...]: the
datasets T_train / T_<split> of DATA/dataset_info.json; key=value pairs are LLaMA-Factory overrides, applied last."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from pipeline.errors import RunError
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
    parser.add_argument(
        "--params",
        metavar="YAML",
        help="train: overrides from a YAML of key: value pairs (a sweep's best.yaml), before the key=value ones",
    )
    args = parser.parse_intermixed_args(argv)
    if args.checkpoint and args.stage in ("train", "qlora"):
        parser.error("--checkpoint (CHECKPOINT=) chooses the adapter predict and export read; train writes one")
    if args.params and args.stage not in ("train", "qlora"):
        parser.error("--params (PARAMS=) holds training overrides; give it to train or qlora")
    if args.stage == "predict":
        return stage_main(lambda: predict(Run.from_args(args), args.samples, args.temperature, args.dry_run))
    return stage_main(
        lambda: run_stage(
            Run.from_args(args).with_overrides(*params_overrides(args.params)), args.stage, args.fresh, args.dry_run
        )
    )


def params_overrides(path: str | None) -> list[str]:
    """The key: value pairs of a PARAMS= file as key=value overrides (each checked later with the rest)."""
    if not path:
        return []
    try:
        params = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise RunError(f"PARAMS={path}: cannot read it ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise RunError(f"PARAMS={path} is not YAML: {err}") from None
    if not isinstance(params, dict) or not all(isinstance(v, (str, int, float, bool)) for v in params.values()):
        raise RunError(f"PARAMS={path}: expected key: value pairs of LLaMA-Factory arguments (a sweep's best.yaml)")
    return [f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in params.items()]


if __name__ == "__main__":
    sys.exit(main())
