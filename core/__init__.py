"""The bottom layer every package may import and that imports none of ours: what a task is (`core.tasks`), how
model text becomes a label (`core.extract`), metrics (`core.metrics`), the adapters' records and dataset registry
(`core.records`), where each stage's files live (`core.paths`) and atomic file writes (`core.fileio`).
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: the message names the file, the row or id, the column and what was expected. CLIs exit 2."""


class OutputError(InputError):
    """A file that cannot be written (read-only folder, name too long, disk full): one line naming the path."""


def first_items(items, limit: int = 5) -> str:
    """`a, b, c` for the first `limit` items, `… (N in all)` when there are more: error messages name a few."""
    items = list(items)
    shown = ", ".join(str(item) for item in items[:limit])
    return shown if len(items) <= limit else f"{shown}, … ({len(items)} in all)"


def positive_int(text: str) -> int:
    """argparse type of `--limit N` (LIMIT=N in make) and friends: an integer ≥ 1."""
    import argparse

    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)
