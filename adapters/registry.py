"""The adapter registry: task name → how one competition file becomes the datasets of one split.

Each competition module registers its converter beside its TaskSpec (`register_adapter` and `register_task`), the
way LLaMA-Factory's `data/converter.py` registers its converters; the registry loads the built-in modules on its
first lookup (core.tasks.TASKS.load), so nobody imports them for their side effects.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.registry import LazyRegistry
from core.tasks import TASKS

if TYPE_CHECKING:
    from adapters.records import Part


@dataclass(frozen=True)
class Adapter:
    """A task: `convert(path, split, args)` turns one competition file into the Parts (datasets) of one split."""

    name: str
    help: str
    convert: Callable[[Path, str, argparse.Namespace], list[Part]]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


ADAPTERS: LazyRegistry[Adapter] = LazyRegistry(TASKS.load)  # the competition modules register both together


def register_adapter(
    name: str,
    convert: Callable[[Path, str, argparse.Namespace], list[Part]],
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Adapter:
    try:
        return ADAPTERS.register(name, Adapter(name, help, convert, add_arguments))
    except ValueError:
        raise ValueError(f"adapter {name!r} is already registered") from None
