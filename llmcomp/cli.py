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
  vote, self-consistency, report, submit, metrics             (python -m voting ...; metrics = voting score)
  board     LLaMA Board, its presets, terminal and web chat   (python -m pipeline.board)
  exam-layout  the CoLA/QQP exam's folder: pre_data/, saved_model/, result_*.txt + score (python -m voting.exam)
  demo      the whole pipeline on the embedded sample         (python -m pipeline.demo)

`llmcomp SUBCOMMAND --help` shows the stage's own options.
"""

from __future__ import annotations

import importlib
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
    "metrics": ("voting.cli", ("score",)),
    "board": ("pipeline.board", ()),
    "exam-layout": ("voting.exam", ()),
    "demo": ("pipeline.demo", ()),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"llmcomp: unknown subcommand {command!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, head = COMMANDS[command]
    stage_main: Callable[..., int] = importlib.import_module(module).main
    return stage_main([*head, *rest]) if command != "demo" else stage_main()


if __name__ == "__main__":
    sys.exit(main())
