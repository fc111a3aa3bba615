"""A sweep's search space: a small YAML of LLaMA-Factory keys, each checked against LLaMA-Factory's argument types
(pipeline.checks, as `ARGS=` overrides are) before any trial runs.

    key: {low: A, high: B[, log: true][, step: S]}   an int or float range, as LLaMA-Factory types the key
    key: [a, b, c]                                   choices
    key: value                                       one value for every trial

factory_configs/MODEL/sweep.yaml is a preset's default, factory_configs/sweep.yaml the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.paths import CONFIG_DIR
from pipeline.checks import argument_types, check_types, coerce
from pipeline.errors import RunError

# keys a trial may not set: the sweep decides them (its folder, its data) or the runner does (resumption)
RESERVED = ("output_dir", "dataset", "eval_dataset", "dataset_dir", "overwrite_output_dir", "resume_from_checkpoint")


@dataclass(frozen=True)
class Param:
    """One key of the space: `kind` int|float (a range), choice, or fixed."""

    name: str
    kind: str
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: tuple = ()

    def suggest(self, trial: Any) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        return self.choices[0]


def space_path(model: str, given: str | None) -> Path:
    if given:
        return Path(given)
    own = CONFIG_DIR / model / "sweep.yaml"
    return own if own.is_file() else CONFIG_DIR / "sweep.yaml"


def number_kind(annotation: Any) -> str | None:
    """'float' or 'int' where LLaMA-Factory's type of a key takes that kind of number (pipeline.checks.coerce)."""
    if isinstance(coerce(0.5, annotation), float):
        return "float"
    one = coerce(1, annotation)
    return "int" if isinstance(one, int) and not isinstance(one, bool) else None


def read_space(path: Path) -> list[Param]:
    """The space's keys checked against LLaMA-Factory's argument types; RunError naming the key otherwise."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RunError(f"cannot read the sweep space {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise RunError(f"{path} is not YAML: {err}") from None
    if not isinstance(raw, dict) or not raw:
        raise RunError(f"{path}: expected a mapping of LLaMA-Factory keys to ranges, choices or values")
    known = argument_types()
    params = []
    for key, spec in raw.items():
        where = f"{path} {key}"
        if key not in known:
            raise RunError(f"{where}: not a LLaMA-Factory argument (a typo? see its hparams/*_args.py)")
        if key in RESERVED:
            raise RunError(f"{where}: the sweep sets {key} itself; it cannot be searched")
        if isinstance(spec, list):
            if not spec:
                raise RunError(f"{where}: an empty list of choices")
            params.append(Param(key, "choice", choices=tuple(converted(key, value, str(path)) for value in spec)))
        elif isinstance(spec, dict):
            params.append(range_param(key, spec, known[key], path))
        else:
            params.append(Param(key, "fixed", choices=(converted(key, spec, str(path)),)))
    return params


def converted(key: str, value: Any, where: str) -> Any:
    """`value` as LLaMA-Factory's type of `key` wants it (pipeline.checks.check_types refuses a wrong one)."""
    config = {key: value}
    check_types(config, where)
    return config[key]


def range_param(key: str, spec: dict, annotation: Any, path: Path) -> Param:
    where = f"{path} {key}"
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown or "low" not in spec or "high" not in spec:
        raise RunError(f"{where}: expected {{low: A, high: B[, log: true][, step: S]}} or a list of choices")
    kind = number_kind(annotation)
    if kind is None:
        raise RunError(f"{where}: LLaMA-Factory's {key} is not a number; give a list of choices")
    low, high, step = (converted(key, spec.get(name), str(path)) for name in ("low", "high", "step"))
    if kind == "int" and not all(isinstance(v, int) for v in (low, high, *([step] if step is not None else []))):
        raise RunError(f"{where}: {key} is an integer; low, high and step must be integers")
    log = bool(spec.get("log", False))
    if low > high:
        raise RunError(f"{where}: an empty range (low {low} > high {high})")
    if log and (low <= 0 or step is not None):
        raise RunError(f"{where}: a log range needs low > 0 and no step")
    if step is not None and step <= 0:
        raise RunError(f"{where}: step {step} must be positive")
    return Param(key, kind, low, high, log, step)


def space_overrides(params: dict[str, Any]) -> list[str]:
    """key=value overrides of a trial's parameters (floats in full: 1e-05 stays 1e-05)."""
    return [f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in params.items()]
