"""The adapter registry: task name → how one competition file becomes the datasets of one split.

Each competition module registers its converter beside its TaskSpec (`register_adapter` and `register_task`), the
way LLaMA-Factory's `data/converter.py` registers its converters; the registry loads the built-in modules on its
first lookup (core.tasks.TASKS.load), so nobody imports them for their side effects.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


class AdapterRegistry(dict[str, Adapter]):
    """{adapter name: Adapter}, filled with the built-in competitions on first read (with the task registry)."""

    def load(self) -> AdapterRegistry:
        TASKS.load()  # the competition modules register their adapters and tasks together
        return self

    def __getitem__(self, name: str) -> Adapter:
        return dict.__getitem__(self.load(), name)

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self.load(), name)

    def __iter__(self) -> Iterator[str]:
        return dict.__iter__(self.load())

    def __len__(self) -> int:
        return dict.__len__(self.load())

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self.load(), name, default)

    def keys(self):
        return dict.keys(self.load())

    def values(self):
        return dict.values(self.load())

    def items(self):
        return dict.items(self.load())


ADAPTERS = AdapterRegistry()


def register_adapter(
    name: str,
    convert: Callable[[Path, str, argparse.Namespace], list[Part]],
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Adapter:
    if dict.__contains__(ADAPTERS, name):
        raise ValueError(f"adapter {name!r} is already registered")
    adapter = Adapter(name, help, convert, add_arguments)
    dict.__setitem__(ADAPTERS, name, adapter)
    return adapter
