"""Voting, scoring and submissions: from `predictions/<task>/*.csv` to `submissions/<task>/`.

A predictions file is UTF-8 (or GB18030) CSV with header `id,prediction`, optionally `prob_<label>` columns and
extra columns (e.g. `dimension`) that are carried through. `prediction` may hold raw generated text
("Score: 4", "答案是B。"); every command applies the task's extraction (core/extract.py) first.

Policies, stated once (the CLI help and the README point here):

Ties (`vote`)
    The label with the strictly highest (weighted) count wins. When several labels share the top count the
    tie-breaker model's label wins, even when the tie-breaker's own label is not among the tied ones (the seed's
    rule). With four equal-weight models this is exactly the seed's four-way rule: 4/4 and 3/4 win, 2-1-1 wins,
    2-2 and 1-1-1-1 go to the tie-breaker. Rows whose group is listed in `--tie-breaker-only` (the seed's 选择题)
    take the tie-breaker's label directly.
Ties (`self-consistency`)
    The most frequent answer among an id's samples wins; among tied answers, the one that appeared first in sample
    order (the `sample` column, numerically when it is an integer, else file order) wins. Deterministic.
Unparsed text
    Text the task's extraction cannot read is counted, reported on stderr and in each command's JSON summary, and
    handled explicitly, never by a silent default:
    - `vote`: an unparsed vote abstains (it does not count). If the tie-breaker abstains on a row where it is
      needed (a tie, or a `--tie-breaker-only` row), the plurality of the other models decides; if they tie too,
      the tied label that comes first in the task's label order wins (`decided_by` = `fallback`). If no model
      parses on a row, the command exits 2 naming the ids, unless `--unparsed LABEL` is given
      (`decided_by` = `unparsed`).
    - `self-consistency`: unparsed samples abstain; an id with no parsed sample is an error unless `--unparsed`.
    - `score` / `report`: an unparsed prediction counts as wrong and is reported as `unparsed`; it is left out of
      the confusion matrix and of MAE (which is over parsed rows, `mae_n` of them).
    - `submit`: an unparsed prediction is an error unless `--unparsed LABEL` is given.
    A bare value of the label's kind that is outside the task's set (judge "7", logic "F") is bad input: exit 2.
Bad input
    Different id sets, duplicate ids, empty files, labels outside the task's set, unknown tie-breaker or weight
    names: exit status 2 and one message naming the files and the first offending ids. No output file is written
    (all writes are atomic). Also refused: an empty `--out`, an output that is one of the inputs under any spelling
    of its path (relative, `./`, `..`, a symlink or a hard link), a weight that is not a finite number above 0, and
    with `--soft` prob_ values outside [0, 1], rows not summing to 1 (± 0.01), or a `prediction` that is not its
    row's most probable label.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from core import InputError, first_items

__all__ = ["VotingError", "check_outputs", "first_items", "require_path"]


class VotingError(InputError):
    """Bad input: the CLI prints the message (it names the file and the first offending ids) and exits 2."""


def _same_file(a: Path, b: Path) -> bool:
    """Whether two spellings name one file: relative/absolute, `./`, `..`, symlinks, hard links."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def require_path(option: str, value: str) -> str:
    """Refuse an empty path option (`--out ''` would name the current folder)."""
    if not str(value).strip():
        raise VotingError(f"{option} is empty, expected a path")
    return value


def check_outputs(option: str, out: str, writes: Iterable[str | Path], inputs: Iterable[str | Path | None]) -> None:
    """Refuse an empty `option` value, and any file it would write (`writes`) that is one of the `inputs` under any
    spelling: the voted file must never replace a model's predictions."""
    require_path(option, out)
    given = [Path(path) for path in inputs if path]
    for written in map(Path, writes):
        for path in given:
            if _same_file(written, path):
                shown = f"{out} ({written})" if str(written) != str(out) else str(out)
                raise VotingError(
                    f"{option} {shown} is the input file {path}: it would be overwritten; "
                    f"write the output to another path"
                )
