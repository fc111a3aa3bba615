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

import importlib.util
import os
import sys
from pathlib import Path

import yaml

from core.fileio import atomic_write_text
from core.paths import STAGE_DIRS
from pipeline.checks import is_loopback
from pipeline.inference import infer_arguments
from pipeline.manifest import redact
from pipeline.presets import cuda_available
from pipeline.run import Run, stage_main, stage_parser


def vllm_usable() -> bool:
    return importlib.util.find_spec("vllm") is not None and cuda_available()


def server_config(run: Run) -> tuple[dict, Path]:
    """(the API server's LLaMA-Factory arguments, where they are recorded)."""
    config = run.config("predict")
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


def serve(run: Run, host: str, port: int, dry_run: bool) -> int:
    """Record the server's arguments (secrets as ***), say what is served where, then serve until stopped."""
    config, run_yaml = server_config(run)
    if not is_loopback(host):
        print(f"warning: serving on {host}, reachable from other machines", file=sys.stderr)
    atomic_write_text(
        run_yaml,
        f"# python -m pipeline.serve --model {run.model} --task {run.task} --data-dir {run.data_dir}\n"
        + yaml.safe_dump(redact(config), allow_unicode=True, sort_keys=False),
    )
    os.environ.update(
        {
            "API_MODEL_NAME": run.model,
            "DISABLE_VERSION_CHECK": os.environ.get("DISABLE_VERSION_CHECK", "0"),
            "API_VERBOSE": os.environ.get("API_VERBOSE", "0"),
        }
    )
    if "max_new_tokens" in config:
        print(f"[serve] default max_new_tokens {config['max_new_tokens']}: {run.budget_reason(config)}", flush=True)
    print(
        f"[serve] {run.model} on {run.task} ({config['infer_backend']}, adapter "
        f"{config.get('adapter_name_or_path', 'none')}) → http://{host}:{port}/v1  ({run_yaml})",
        flush=True,
    )
    if not dry_run:
        run_server(config, host, port)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("python -m pipeline.serve", __doc__, split=False, limit=False)
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="loopback only unless you mean it (default 127.0.0.1)")
    parser.add_argument("--dry-run", action="store_true", help="write run.yaml and print the command; start nothing")
    args = parser.parse_intermixed_args(argv)
    if not os.environ.get("API_KEY"):
        print(
            "error: API_KEY is not set: the server refuses to start without a key "
            "(export API_KEY=...; clients send it as `Authorization: Bearer ...`)",
            file=sys.stderr,
        )
        return 2
    return stage_main(lambda: serve(Run.from_args(args), args.host, args.port, args.dry_run))


if __name__ == "__main__":
    sys.exit(main())
