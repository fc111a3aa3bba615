"""Every run recorded in one tracking store: MLflow, embedded by default (SQLite + an artifact folder under
`mlruns/`, created on first use, no server, no telemetry), or a team's store through `MLFLOW_TRACKING_URI`.

One experiment per task. Each stage records one run when it ends: its parameters, metrics (step series too),
tags that link it to the runs it used, and its files as artifacts. Run folders stay the source of truth:
`llmcomp track import` adds runs made with `TRACK=0` (or before this existed) from their folders.

A store that cannot be written (read-only folder, full disk, a server that does not answer) never fails a run:
one warning line, and the run goes on. Writers to the embedded store take a file lock, so concurrent runs
(two trainings and a vote) leave it whole.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

STORE_DIR = Path("mlruns")  # relative to the working directory, like saves/ and predictions/
PARAM_MAX = 6000  # MLflow's limit on a parameter's value
TAG = "llmcomp."  # our tags: llmcomp.stage, llmcomp.folder, llmcomp.train_run, ...
_warned: set[str] = set()


def enabled() -> bool:
    """TRACK=0 (make) / --no-track turns tracking off."""
    return os.environ.get("TRACK", "1").strip().lower() not in ("0", "false", "no", "off")


def embedded() -> bool:
    return not os.environ.get("MLFLOW_TRACKING_URI")


def tracking_uri() -> str:
    if not embedded():
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(STORE_DIR / 'mlflow.db').resolve()}"


def artifact_root() -> str:
    return (STORE_DIR / "artifacts").resolve().as_uri()


def quiet_mlflow() -> None:
    """No telemetry, no version nags, no INFO lines from alembic on first use."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # a team server that does not answer costs a run seconds, not MLflow's default minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import logging

    import mlflow  # noqa: F401  (its import sets its loggers to INFO: the levels go after it)

    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def store_lock() -> Iterator[None]:
    """One writer at a time on the embedded SQLite store (others wait); nothing to lock for a server."""
    if not embedded():
        yield
        return
    from core.fileio import locked

    STORE_DIR.mkdir(parents=True, exist_ok=True)
    with locked(STORE_DIR / "mlflow.db"):
        yield


def client() -> Any:
    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def experiment_id(store: Any, task: str) -> str:
    found = store.get_experiment_by_name(task)
    if found is not None:
        return str(found.experiment_id)
    location = f"{artifact_root()}/{task}" if embedded() else None
    # model training, not GenAI tracing: MLflow 3's UI then opens on the runs table and their charts
    kind = {"mlflow.experimentKind": "custom_model_development"}
    return str(store.create_experiment(task, artifact_location=location, tags=kind))


def warn(err: BaseException) -> None:
    """One line per kind of failure and process: the run goes on, its folder has everything."""
    key = type(err).__name__
    if key in _warned:
        return
    _warned.add(key)
    first = str(err).strip().splitlines()[0] if str(err).strip() else key
    print(
        f"warning: the tracking store ({tracking_uri()}) was not written ({key}: {first[:200]}); the run goes on, "
        "its folder has everything: `llmcomp track import FOLDER` adds it later (TRACK=0 turns tracking off)",
        file=sys.stderr,
        flush=True,
    )


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (cut to MLflow's 250 characters); None values left out."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif value is not None:
            flat[name[:250]] = value
    return flat


def flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Parameters as dotted keys, values as text cut to MLflow's limit."""
    return {key: str(value)[:PARAM_MAX] for key, value in flatten(params).items()}


def finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def record(
    stage: str,
    task: str,
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    series: Mapping[str, Iterable[tuple[int, Any]]] | None = None,
    tags: Mapping[str, Any] | None = None,
    artifacts: Iterable[Path] = (),
    start: float | None = None,
    end: float | None = None,
    status: str = "FINISHED",
) -> str | None:
    """Record one finished run of `stage` in the task's experiment; its id, or None (tracking off or failed).

    `series`: step series ({"loss": [(step, value), ...]}); `tags` without our prefix get it; `status` is MLflow's
    (FINISHED, FAILED, KILLED).
    """
    if not enabled():
        return None
    try:
        from mlflow.entities import Metric, Param

        now = time.time()
        start_ms, end_ms = int((start or now) * 1000), int((end or now) * 1000)
        all_tags = {"mlflow.runName": name, f"{TAG}stage": stage, f"{TAG}task": task}
        all_tags.update({(k if k.startswith(("mlflow.", TAG)) else TAG + k): str(v) for k, v in (tags or {}).items()})
        metric_list = [
            Metric(key, number, end_ms, 0) for key, v in (metrics or {}).items() if (number := finite(v)) is not None
        ]
        for key, points in (series or {}).items():
            metric_list += [
                Metric(key, number, end_ms, int(step)) for step, v in points if (number := finite(v)) is not None
            ]
        param_list = [Param(k, v) for k, v in flat_params(params or {}).items()]
        with store_lock():
            store = client()
            run = store.create_run(experiment_id(store, task), start_time=start_ms, tags=all_tags, run_name=name)
            run_id = run.info.run_id
            for i in range(0, len(param_list), 100):
                store.log_batch(run_id, params=param_list[i : i + 100])
            for i in range(0, len(metric_list), 1000):
                store.log_batch(run_id, metrics=metric_list[i : i + 1000])
            for path in artifacts:
                if Path(path).is_file():
                    store.log_artifact(run_id, str(path))
            store.set_terminated(run_id, status=status, end_time=end_ms)
        return str(run_id)
    except Exception as err:  # a store that cannot be written never fails a run
        warn(err)
        return None


def find_runs(task: str, **tags: str) -> list[Any]:
    """The task's runs whose llmcomp tags equal `tags`, newest first ([] when off, absent or unreadable)."""
    if not enabled():
        return []
    try:
        store = client()
        found = store.get_experiment_by_name(task)
        if found is None:
            return []
        query = " and ".join(f"tags.`{TAG}{key}` = '{value}'" for key, value in tags.items())
        return list(
            store.search_runs([found.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"])
        )
    except Exception as err:
        warn(err)
        return []


def latest_run_id(task: str, **tags: str) -> str | None:
    runs = find_runs(task, **tags)
    return str(runs[0].info.run_id) if runs else None
