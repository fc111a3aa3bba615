"""Serve a trained run over LLaMA-Factory's OpenAI-compatible API (its `llamafactory-cli api` app), on 127.0.0.1.

    API_KEY=... python -m pipeline.serve --model smollm2 --task logic [--port 7860] [key=value ...]
    (make serve MODEL=smollm2 TASK=logic PORT=7860)

The model, adapter, template, default_system and cutoff_len are the resolved predict preset's, the same ones
`python -m pipeline predict` and label scoring use, written to saves/TASK/MODEL/serve/run.yaml. The server requires
API_KEY (from the environment only; it is never written to a file) as a bearer token on every route; the
interactive docs (/docs, /redoc, /openapi.json) are turned off. Secrets given as overrides are written as `***`.
vLLM (`infer_backend: vllm`) is used where vllm is importable and CUDA is present, else LLaMA-Factory's Hugging Face
engine. The server runs in this process (LLaMA-Factory's `create_app` under uvicorn, as `llamafactory-cli api`
does), so its PID is the server's: stopping that PID stops the server.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import sys
from pathlib import Path

import yaml

from core.fileio import atomic_write_text
from core.paths import STAGE_DIRS
from pipeline.runs import (
    RunError,
    cuda_available,
    generation_budget,
    parse_overrides,
    redact,
    resolve_config,
    task_model,
)


def vllm_usable() -> bool:
    return importlib.util.find_spec("vllm") is not None and cuda_available()


def server_config(model: str, task: str, overrides: list[str]) -> tuple[dict, Path]:
    """(the API server's LLaMA-Factory arguments, where they are recorded)."""
    from pipeline.label_scoring import infer_arguments

    config = resolve_config(model, "predict", task, parse_overrides(overrides))
    args = infer_arguments(config)
    if "infer_backend" not in args:
        args["infer_backend"] = "vllm" if vllm_usable() else "huggingface"
    return args, Path(config["output_dir"]).with_name(STAGE_DIRS["serve"]) / "run.yaml"  # beside predict/


def server_app(chat_model: object):
    """LLaMA-Factory's API app without its unauthenticated docs routes (/docs, /redoc, /openapi.json), behind the
    request limits of pipeline/serve_limits.py."""
    from llamafactory.api.app import create_app

    from pipeline.serve_limits import guard

    app = create_app(chat_model)
    hidden = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url} - {None}
    app.router.routes = [route for route in app.router.routes if getattr(route, "path", None) not in hidden]
    app.openapi_url = app.docs_url = app.redoc_url = None
    return guard(app, chat_model)


def run_server(config: dict, host: str, port: int) -> None:
    """What `llamafactory-cli api` does, on our app: load the model, then serve until stopped."""
    import uvicorn
    from llamafactory.chat import ChatModel

    uvicorn.run(server_app(ChatModel(dict(config))), host=host, port=port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        help="a factory_configs/ preset (default: the task's embedded CPU model, core/tasks.py EMBEDDED_MODEL)",
    )
    parser.add_argument("--task", default="judge_demo")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="loopback only unless you mean it (default 127.0.0.1)")
    parser.add_argument("--dry-run", action="store_true", help="write run.yaml and print the command; start nothing")
    parser.add_argument("overrides", nargs="*", help="LLaMA-Factory key=value overrides of the predict preset")
    args = parser.parse_intermixed_args(argv)
    args.model = task_model(args.model, args.task)
    if not os.environ.get("API_KEY"):
        print(
            "error: API_KEY is not set: the server refuses to start without a key "
            "(export API_KEY=...; clients send it as `Authorization: Bearer ...`)",
            file=sys.stderr,
        )
        return 2
    try:
        config, run_yaml = server_config(args.model, args.task, args.overrides)
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"warning: serving on {args.host}, reachable from other machines", file=sys.stderr)
    atomic_write_text(
        run_yaml,
        f"# python -m pipeline.serve --model {args.model} --task {args.task}\n"
        + yaml.safe_dump(redact(config), allow_unicode=True, sort_keys=False),
    )
    os.environ.update(
        {
            "API_MODEL_NAME": args.model,
            "DISABLE_VERSION_CHECK": os.environ.get("DISABLE_VERSION_CHECK", "0"),
            "API_VERBOSE": os.environ.get("API_VERBOSE", "0"),
        }
    )
    if "max_new_tokens" in config:
        budget = (
            None
            if any(o.startswith("max_new_tokens=") for o in args.overrides)
            else generation_budget(args.task, config.get("dataset_dir"))
        )
        print(
            f"[serve] default max_new_tokens {config['max_new_tokens']}" + (f": {budget[1]}" if budget else ""),
            flush=True,
        )
    print(
        f"[serve] {args.model} on {args.task} ({config['infer_backend']}, adapter "
        f"{config.get('adapter_name_or_path', 'none')}) → http://{args.host}:{args.port}/v1  ({run_yaml})",
        flush=True,
    )
    if args.dry_run:
        return 0
    run_server(config, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
