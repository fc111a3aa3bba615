"""A name → entry registry that fills itself on first read, as LLaMA-Factory's templates are registered where they
are defined: the task and adapter registries load the built-in competition modules the first time anyone looks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class LazyRegistry(dict[str, T]):
    """{name: entry}; every read first runs `loader` once (it imports the modules that register the built-ins).
    `register` writes without loading, so a module can register while the loader imports it."""

    def __init__(self, loader: Callable[[], object]) -> None:
        super().__init__()
        self._loader: Callable[[], object] | None = loader

    def load(self) -> LazyRegistry[T]:
        loader, self._loader = self._loader, None  # cleared first: the modules register into this dict while loading
        if loader is not None:
            loader()
        return self

    def register(self, name: str, entry: T, replace: bool = False) -> T:
        if dict.__contains__(self, name) and not replace:
            raise ValueError(f"{name!r} is already registered")
        dict.__setitem__(self, name, entry)
        return entry

    def __getitem__(self, name: str) -> T:
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
