"""LLaMA-Factory's own front ends on this project's folders: LLaMA Board (web) and the terminal chat.

    python -m pipeline.board webui [--host 127.0.0.1] [--port 7860]     LLaMA Board, cwd = the repo root
    python -m pipeline.board preset --model MODEL --task TASK [key=value ...]
                                            factory_configs/MODEL/lora_sft.yaml → a config the board can load
    python -m pipeline.board chat --model MODEL --task TASK [--dry-run] [key=value ...]
                                            llamafactory-cli chat with saves/TASK/MODEL/lora (run through
                                            pipeline/chat_entry.py: it waits for the answer thread at exit)
    python -m pipeline.board webchat --model MODEL --task TASK [--host 127.0.0.1] [--port 7860] [key=value ...]
                                            llamafactory-cli webchat (LLaMA-Factory's web demo), same model

The board resolves everything against its working directory: data/ (Data dir), saves/ (outputs),
llamaboard_config/ (Config path: Save/Load arguments) and llamaboard_cache/ (its user config).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import yaml

from core import InputError
from core.fileio import atomic_write_text
from core.records import common_system, load_dataset
from pipeline.checks import check_adapter, is_loopback
from pipeline.errors import RunError
from pipeline.presets import ROOT, preset_path
from pipeline.run import Run, run_arguments, stage_main

BOARD_CONFIG_DIR = "llamaboard_config"  # llamafactory.webui.common.DEFAULT_CONFIG_DIR, relative to the board's cwd
# Model identity only: the predict preset's generation settings (max_new_tokens=8 …) are for batch labels, not chat.
CHAT_KEYS = (
    "model_name_or_path",
    "adapter_name_or_path",
    "template",
    "default_system",
    "trust_remote_code",
    "flash_attn",  # the attention the adapter was trained and predicted with (gemma3: eager)
    "finetuning_type",
    "infer_backend",
    "quantization_bit",
    "quantization_method",
    "cache_dir",
)
# LLaMA-Factory arg → LLaMA Board element id, for the fields the board shows; the rest go to "Extra arguments".
BOARD_FIELDS = {
    "finetuning_type": "top.finetuning_type",
    "template": "top.template",
    "quantization_method": "top.quantization_method",
    "dataset_dir": "train.dataset_dir",
    "learning_rate": "train.learning_rate",
    "num_train_epochs": "train.num_train_epochs",
    "max_grad_norm": "train.max_grad_norm",
    "max_samples": "train.max_samples",
    "cutoff_len": "train.cutoff_len",
    "per_device_train_batch_size": "train.batch_size",
    "gradient_accumulation_steps": "train.gradient_accumulation_steps",
    "lr_scheduler_type": "train.lr_scheduler_type",
    "logging_steps": "train.logging_steps",
    "save_steps": "train.save_steps",
    "warmup_steps": "train.warmup_steps",
    "lora_rank": "train.lora_rank",
    "lora_alpha": "train.lora_alpha",
    "lora_dropout": "train.lora_dropout",
    "lora_target": "train.lora_target",
    "report_to": "train.report_to",
    "output_dir": "train.output_dir",
}
TEXT_FIELDS = {"train.learning_rate", "train.num_train_epochs", "train.max_grad_norm", "train.max_samples"}
# (min, max, step) of the board's sliders (webui/components/train.py): a value off the grid stays in extra args.
SLIDERS = {
    "train.cutoff_len": (4, 131072, 1),
    "train.batch_size": (1, 1024, 1),
    "train.gradient_accumulation_steps": (1, 1024, 1),
    "train.logging_steps": (1, 1000, 5),
    "train.save_steps": (10, 5000, 10),
    "train.warmup_steps": (0, 5000, 1),
    "train.lora_rank": (1, 1024, 1),
    "train.lora_alpha": (1, 2048, 1),
    "train.lora_dropout": (0, 1, 0.01),
}
# Set by the board itself from its other fields (or meaningless there).
BOARD_DERIVED = {
    "model_name_or_path",
    "stage",
    "do_train",
    "dataset",
    "bf16",
    "fp16",
    "pure_bf16",
    "quantization_bit",
    "double_quantization",
}


def board_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
    return f"http://[{shown.strip('[]')}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def cli_path() -> str:
    return str(Path(sys.executable).with_name("llamafactory-cli"))


def board_env(host: str, port: int, open_browser: bool) -> dict[str, str]:
    env = dict(os.environ)
    # The board starts runs with Popen(["llamafactory-cli", ...]): this venv's must be first on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        GRADIO_SERVER_NAME=host,
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",  # no telemetry, no PyPI version check at launch
        GRADIO_SHARE="0",  # never a public *.gradio.live tunnel; HOST= is the one way to expose it
        DISABLE_VERSION_CHECK=os.environ.get("DISABLE_VERSION_CHECK", "0"),
    )
    if not open_browser:
        env["BROWSER"] = "true"  # LLaMA-Factory launches with inbrowser=True; `true URL` opens nothing
    return env


def webui(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).resolve()
    if not (workdir / "data" / "dataset_info.json").is_file():
        print(
            f"[webui] note: {workdir}/data/dataset_info.json is missing; register a dataset first "
            "(make data TASK=... or python -m adapters ...)",
            file=sys.stderr,
        )
    if not is_loopback(args.host):
        print(
            f"[webui] WARNING: listening on {args.host}: anyone who can reach this machine on port {args.port} "
            "can read data/, start runs and load models. Use HOST=127.0.0.1 (default) and an SSH tunnel "
            "unless you mean it.",
            file=sys.stderr,
        )
    command = [cli_path(), "webui"]
    env = board_env(args.host, args.port, open_browser=not args.no_browser)
    print(
        f"[webui] LLaMA Board on {board_url(args.host, args.port)}  (data: {workdir}/data, runs: {workdir}/saves)",
        flush=True,
    )
    if args.dry_run:
        shown = {key: env[key] for key in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "GRADIO_ANALYTICS_ENABLED")}
        print(
            f"cd {shlex.quote(str(workdir))} && "
            + " ".join(f"{k}={v}" for k, v in shown.items())
            + " "
            + shlex.join(command)
        )
        return 0
    os.chdir(workdir)
    os.execve(command[0], command, env)  # the server takes this process's id: Ctrl-C and kill reach it directly


def board_model_name(model_path: str, template: str) -> str:
    """The name in the board's model list closest to `model_path` among those whose default template is `template`.

    The board resets Model path and Template whenever Model name changes, from this name; see write_preset.
    """
    from llamafactory.extras.constants import DEFAULT_TEMPLATE, SUPPORTED_MODELS

    same_template = [name for name in SUPPORTED_MODELS if DEFAULT_TEMPLATE.get(name) == template]
    if not same_template:
        return "Custom"
    stem = model_path.rstrip("/").rsplit("/", 1)[-1].lower()

    def likeness(name: str) -> float:  # the hub id itself scores 1.0; a local folder goes by its name
        return max(
            SequenceMatcher(None, stem, hub_id.rsplit("/", 1)[-1].lower()).ratio()
            for hub_id in SUPPORTED_MODELS[name].values()
        )

    return max(same_template, key=likeness)


def on_slider(elem_id: str, value: Any) -> bool:
    low, high, step = SLIDERS[elem_id]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        return False
    return abs((value - low) / step - round((value - low) / step)) < 1e-6


def board_config(config: dict[str, Any], name: str, model_path: str) -> dict[str, Any]:
    """A resolved preset as LLaMA Board's saved-arguments file: {element id: value}, leftovers in extra args."""
    from llamafactory.extras.constants import TRAINING_STAGES

    stages = {short: label for label, short in TRAINING_STAGES.items()}
    board: dict[str, Any] = {
        "top.model_name": name,
        "top.model_path": model_path,
        "train.training_stage": stages[config.get("stage", "sft")],
        "train.dataset": [d.strip() for d in str(config.get("dataset", "")).split(",") if d.strip()],
        "train.compute_type": (
            "pure_bf16"
            if config.get("pure_bf16")
            else "bf16"
            if config.get("bf16")
            else "fp16"
            if config.get("fp16")
            else "fp32"
        ),
    }
    if config.get("quantization_bit"):
        board["top.quantization_bit"] = str(config["quantization_bit"])
    extra: dict[str, Any] = {}
    for key, value in config.items():
        elem_id = BOARD_FIELDS.get(key)
        if elem_id in SLIDERS and not on_slider(elem_id, value):
            elem_id = None
        if elem_id is not None:
            board[elem_id] = str(value) if elem_id in TEXT_FIELDS else value
        elif key not in BOARD_DERIVED:
            extra[key] = value
    board["train.extra_args"] = json.dumps(extra, ensure_ascii=False)
    return board


def write_preset(run: Run, stage: str, workdir: Path) -> Path:
    """Write llamaboard_config/MODEL_TASK.yaml and remember MODEL's path for its board name.

    Loading sets Model name, and the board then refills Model path from its user config and Template from the
    name: so the name is one whose default template is the preset's, and the path is stored under that name
    (LLaMA-Factory's own save_config, what typing a path in the board does).
    """
    from llamafactory.extras.constants import SUPPORTED_MODELS
    from llamafactory.webui.common import save_config

    model, task = run.model, run.task
    config = run.config(stage)
    model_path = str(config["model_name_or_path"])
    if (ROOT / model_path).is_dir():  # a project folder (models/smollm2): absolute, whatever the board's cwd
        model_path = str(ROOT / model_path)
    name = board_model_name(str(config["model_name_or_path"]), str(config.get("template", "")))
    board = board_config(config, name, model_path)
    out = workdir / BOARD_CONFIG_DIR / f"{model}_{task}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# LLaMA Board arguments from {preset_path(model, stage).relative_to(ROOT)} for {task} "
        f"(python -m pipeline.board preset). Train tab → Config path: {out.name} → Load arguments.\n"
    )
    atomic_write_text(out, header + yaml.safe_dump(board, allow_unicode=True, sort_keys=False))
    cwd = Path.cwd()
    try:
        os.chdir(workdir)  # the board's user config is llamaboard_cache/user_config.yaml under its cwd
        save_config(None, model_name=name, model_path=model_path)
    finally:
        os.chdir(cwd)
    dropped = [key for key, value in json.loads(board["train.extra_args"]).items() if value == ""]
    if dropped:  # webui/common.py _clean_cmd drops "" before a run starts: the board cannot pass an empty value
        print(f"[preset] note: a board run leaves out the empty {', '.join(dropped)}", file=sys.stderr)
    if "default_system" in dropped:
        print(
            f"[preset] note: so it trains with template {config.get('template')}'s own system prompt; predict or "
            "chat its adapter with ARGS=default_system=null to match",
            file=sys.stderr,
        )
    if name != "Custom" and str(config["model_name_or_path"]) not in SUPPORTED_MODELS[name].values():
        print(
            f"[preset] board model name {name!r} stands in for {model_path}: the board's entry nearest to it among "
            f"those whose default template is {config.get('template')!r} (the board resets Template from the name); "
            "Model path is what loads",
            file=sys.stderr,
        )
    if name == "Custom":
        print(
            f"[preset] no board model with template {config.get('template')!r}: pick Template again after loading",
            file=sys.stderr,
        )
    print(f"[preset] {out} (model name {name!r} → {model_path}; runs write to {config.get('output_dir')})")
    return out


def dataset_system(run: Run) -> str | None:
    """The system prompt on the records of TASK_train (else TASK_<split>), as predict gives each row its own; the
    most common one where rows differ (said); None where the dataset has none or is not there."""
    for split in ("train", run.split):
        try:
            records, _ = load_dataset(f"{run.task}_{split}", run.data_dir)
        except InputError:
            continue
        found = common_system(records)
        if found is None:
            return None
        text, count, holding = found
        if count < holding:
            print(
                f"[chat] note: {run.task}_{split}'s rows carry different system prompts; default_system is the most "
                f"common, on {count} of {holding} rows: {text[:60]!r}",
                file=sys.stderr,
            )
        return text
    return None


def chat_keys() -> set[str]:
    """The keys LLaMA-Factory's chat parser takes (its _INFER_ARGS: model, data, finetuning, generation)."""
    import dataclasses

    from llamafactory.hparams.parser import _INFER_ARGS

    return {f.name for cls in _INFER_ARGS for f in dataclasses.fields(cls)}


def chat_config(run: Run) -> dict[str, Any]:
    """The predict preset's model identity with the task's adapter; key=value overrides last (empty drops a key).
    default_system is the dataset's system prompt where its records carry one (predict reads each row's)."""
    refused = sorted(set(run.override_dict) - chat_keys())
    if refused:
        raise RunError(
            f"chat takes LLaMA-Factory's model, data and generation keys; {', '.join(refused)} "
            f"{'is not one' if len(refused) == 1 else 'are not'} (a training key?): leave "
            f"{'it' if len(refused) == 1 else 'them'} out of ARGS="
        )
    config = run.config("predict", cuda=False)
    chat = {key: config[key] for key in CHAT_KEYS if key in config}
    if "default_system" not in run.override_dict and (system := dataset_system(run)) is not None:
        chat["default_system"] = system
    for key, value in run.override_dict.items():
        if value is None or value == "":
            chat.pop(key, None)
        else:
            chat[key] = value
    return chat


def cli_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def chat_command(chat: dict[str, Any]) -> list[str]:
    command = [cli_path(), "chat"]
    for key, value in chat.items():
        command += [f"--{key}", cli_value(value)]
    return command


def adapter_of(chat_args: dict[str, Any], run: Run) -> str | None:
    """The adapter chat loads (None: the base model); one that was never trained is refused, saying how."""
    check_adapter(chat_args, "chat", run.model, run.task, base=ROOT)
    return chat_args.get("adapter_name_or_path")


def chat(args: argparse.Namespace) -> int:
    run = Run.from_args(args)
    chat_args = chat_config(run)
    command = chat_command(chat_args)
    if args.dry_run:
        print(shlex.join(command))
        return 0
    adapter = adapter_of(chat_args, run)
    print(f"[chat] {run.model} on {run.task}: {adapter or 'base model, no adapter'}  (type exit to quit)", flush=True)
    os.chdir(ROOT)  # the preset's paths (models/…, saves/…) are relative to the repo root
    env = {**os.environ, "DISABLE_VERSION_CHECK": os.environ.get("DISABLE_VERSION_CHECK", "0")}
    entry = [sys.executable, "-m", "pipeline.chat_entry", *command[2:]]  # llamafactory-cli chat, joined at exit
    os.execve(entry[0], entry, env)


def webchat(args: argparse.Namespace) -> int:
    """LLaMA-Factory's web demo (`llamafactory-cli webchat`) with the same model as `chat`, on HOST:PORT."""
    run = Run.from_args(args)
    chat_args = chat_config(run)
    command = chat_command(chat_args)
    command[1] = "webchat"
    env = board_env(args.host, args.port, open_browser=not args.no_browser)
    if args.dry_run:
        shown = {key: env[key] for key in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "GRADIO_SHARE")}
        print(" ".join(f"{k}={v}" for k, v in shown.items()) + " " + shlex.join(command))
        return 0
    adapter = adapter_of(chat_args, run)
    if not is_loopback(args.host):
        print(
            f"[webchat] WARNING: listening on {args.host}: anyone who can reach this machine on port {args.port} "
            "can talk to the model. Use HOST=127.0.0.1 (default) and an SSH tunnel unless you mean it.",
            file=sys.stderr,
        )
    print(
        f"[webchat] {run.model} on {run.task}: {adapter or 'base model, no adapter'} → "
        f"{board_url(args.host, args.port)}",
        flush=True,
    )
    os.execve(command[0], command, env)  # the server takes this process's id: Ctrl-C and kill reach it directly


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.board", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    web = commands.add_parser("webui", help="LLaMA Board with the project's data/ (make webui)")
    web.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1, loopback only)")
    web.add_argument("--port", type=int, default=7860)
    web.add_argument("--workdir", default=str(ROOT), help="the board's cwd: holds data/, saves/ (default: repo root)")
    web.add_argument("--no-browser", action="store_true", help="do not open a browser on this machine")
    web.add_argument("--dry-run", action="store_true", help="print the command and environment, start nothing")
    pre = commands.add_parser("preset", help="factory_configs/MODEL preset → llamaboard_config/MODEL_TASK.yaml")
    talk = commands.add_parser("chat", help="terminal chat with saves/TASK/MODEL/lora (make chat)")
    web_chat = commands.add_parser("webchat", help="LLaMA-Factory's web chat with saves/TASK/MODEL/lora (make webchat)")
    web_chat.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    web_chat.add_argument("--port", type=int, default=7860)
    web_chat.add_argument("--no-browser", action="store_true", help="do not open a browser on this machine")
    web_chat.add_argument("--dry-run", action="store_true", help="print the command and environment only")
    for sub in (pre, talk, web_chat):
        run_arguments(sub, split=False, limit=False)
    pre.add_argument("--stage", choices=["train", "qlora"], default="train")
    pre.add_argument("--workdir", default=str(ROOT), help="the board's cwd (default: repo root)")
    talk.add_argument("--dry-run", "--print", action="store_true", help="print the llamafactory-cli command only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # subcommands: argparse has no intermixed parsing for them
    if args.command == "preset":
        return stage_main(lambda: write_preset(Run.from_args(args), args.stage, Path(args.workdir).resolve()))
    return stage_main(lambda: {"webui": webui, "webchat": webchat, "chat": chat}[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
