"""llmcomp SUBCOMMAND [options]: the pipeline's stages behind one command (the Makefile calls it).

  data      raw competition files → DATA/NAME_*.json          (python -m adapters)
  train     LoRA SFT → saves/TASK/MODEL/lora                  (python -m pipeline train; also qlora, export)
  predict   batch generation → predictions/TASK/MODEL.csv     (python -m pipeline predict)
  score     label scoring → predictions/TASK/MODEL_score.csv  (python -m pipeline.score)
  baseline  TF-IDF + LR → predictions/TASK/tfidf.csv          (python -m pipeline.baseline)
  select    every checkpoint label-scored on dev, the best    (python -m pipeline.select)
  sweep     an Optuna study of training runs → best.yaml      (python -m pipeline.sweep)
  serve     OpenAI-compatible API on 127.0.0.1                (python -m pipeline.serve)
  sc        sampled answers from the server                   (python -m pipeline.self_consistency)
  cv        k-fold LoRAs → predictions/TASK/MODEL_oof.csv + MODEL_cv.csv  (python -m pipeline.cv)
  vote, self-consistency, report, submit, metrics             (python -m voting ...)
  ensemble fit  OOF files → nested-CV report + submissions/TASK/ensemble.json (python -m voting ensemble fit)
  board     LLaMA Board, its presets, terminal and web chat   (python -m pipeline.board)
  exam-layout  the CoLA/QQP exam's folder: pre_data/, saved_model/, result_*.txt + score (python -m voting.exam)
  demo      the whole pipeline on the embedded sample         (python -m pipeline.demo)
  runs      the task's tracked runs side by side, best first  (pipeline/leaderboard.py; --json)
  track     import run folders into the tracking store; its UI (llmcomp track import|ui)

Every stage records its run in the tracking store (MLflow: mlruns/ here, or MLFLOW_TRACKING_URI); `--no-track`
anywhere (TRACK=0 in make) turns that off.

`llmcomp SUBCOMMAND --help` shows the stage's own options.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

# subcommand → (module whose main() runs it, arguments put in front of the user's)
COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "data": ("adapters.cli", ()),
    "train": ("pipeline.cli", ("train",)),
    "qlora": ("pipeline.cli", ("qlora",)),
    "predict": ("pipeline.cli", ("predict",)),
    "export": ("pipeline.cli", ("export",)),
    "score": ("pipeline.score", ()),
    "baseline": ("pipeline.baseline", ()),
    "select": ("pipeline.select", ()),
    "sweep": ("pipeline.sweep", ()),
    "serve": ("pipeline.serve", ()),
    "sc": ("pipeline.self_consistency", ()),
    "vote": ("voting.cli", ("vote",)),
    "self-consistency": ("voting.cli", ("self-consistency",)),
    "report": ("voting.cli", ("report",)),
    "submit": ("voting.cli", ("submit",)),
    "metrics": ("voting.cli", ("metrics",)),
    "cv": ("pipeline.cv", ()),
    "ensemble": ("voting.cli", ("ensemble",)),
    "board": ("pipeline.board", ()),
    "exam-layout": ("voting.exam", ()),
    "demo": ("pipeline.demo", ()),
    "runs": ("pipeline.leaderboard", ("runs",)),
    "track": ("pipeline.leaderboard", ("track",)),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if "--no-track" in argv:
        os.environ["TRACK"] = "0"
        argv = [arg for arg in argv if arg != "--no-track"]
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"llmcomp: unknown subcommand {command!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, head = COMMANDS[command]
    stage_main: Callable[..., int] = importlib.import_module(module).main
    return stage_main([*head, *rest]) if command != "demo" else stage_main()


if __name__ == "__main__":
    sys.exit(main())
