"""Confinement of data set readers: every file and folder a reader touches stays inside the data set.

The API checks that a data set's folder lies in a data root (services/control/datasets.py); the
files in it may still be symlinks. A reader passes each file or folder it touches through
:func:`confined`: one that resolves outside the data set's folder (a symlink to the home and its
admin token, to /etc, to another data set) is refused with a DatasetError that names its path
relative to the data set and the rule, never its content. Links that stay inside are followed.

Inside :func:`walk_budget` (the API opens one around the check it runs in a request) every file
and folder touched counts: a check that touches more than ``max_files`` of them, or runs past
``seconds``, is refused with a DatasetError too. Outside one (a training) nothing is counted.

Names read from a data set (labels) appear in messages only through :func:`shown`: escaped, each
cut short, and only the first few.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from trainfaas.services.core.errors import DatasetError

RULE = "every file and folder of a data set must lie inside its folder once symlinks are resolved"
SHOWN_NAMES = 20
SHOWN_NAME_CHARS = 40
_clock = time.monotonic  # the budget's clock (tests replace it)


@dataclass
class _Budget:
    max_files: int
    seconds: float
    deadline: float
    touched: int = 0


_budget: ContextVar[_Budget | None] = ContextVar("trainfaas_dataset_walk_budget", default=None)


@contextmanager
def walk_budget(max_files: int, seconds: float) -> Iterator[None]:
    """Bound the data set checks run inside: at most ``max_files`` files and folders, ``seconds`` in all."""
    token = _budget.set(_Budget(max_files, seconds, _clock() + seconds))
    try:
        yield
    finally:
        _budget.reset(token)


def _count(root: Path) -> None:
    budget = _budget.get()
    if budget is None:
        return
    budget.touched += 1
    if budget.touched > budget.max_files:
        raise DatasetError(f"data set {root}: the check touches more than {budget.max_files} files and folders",
                           {"dataset": f"at most {budget.max_files} files and folders (TRAINFAAS_DATASET_CHECK_MAX_FILES)"})
    in_time(root)


def in_time(root: Path) -> None:
    """Refuse, inside a walk budget whose seconds are spent; readers call it for each line they read."""
    budget = _budget.get()
    if budget is not None and _clock() >= budget.deadline:
        raise DatasetError(f"data set {root}: the check ran past {budget.seconds:g} s",
                           {"dataset": f"a data set checked within {budget.seconds:g} s (TRAINFAAS_DATASET_CHECK_SECONDS)"})


def relative_name(root: Path, path: Path) -> str:
    """``path`` relative to the data set folder ``root``, as the user wrote it there."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def outside(root: Path, name: str, field: str = "dataset") -> DatasetError:
    """The refusal of ``name``, which leads out of the data set ``root``."""
    return DatasetError(f"data set {root}: {name} leads outside the data set's folder; {RULE}",
                        {field: f"{name} must stay inside the data set: {RULE}"})


def confined(root: Path, path: Path) -> Path:
    """``path``, once checked to resolve inside ``root``, the data set's folder.

    Counts against the walk budget. Raises DatasetError naming ``path`` relative to ``root``.
    ``root`` is best passed resolved (the readers resolve it once); an unresolved one is resolved
    here before a path is refused.
    """
    _count(root)
    target = path.resolve()
    if not (target.is_relative_to(root) or target.is_relative_to(root.resolve())):
        raise outside(root, relative_name(root, path))
    return path


def read_text(root: Path, path: Path) -> str:
    """The UTF-8 text of ``path``, a file inside ``root``: checked before it is opened and, where
    /proc tells what an open file is, once more after, so that a file swapped for a symlink out of
    the data set between the check and the opening is refused too (UnicodeDecodeError, OSError)."""
    confined(root, path)
    with path.open("rb") as handle:
        try:
            opened = Path(os.readlink(f"/proc/self/fd/{handle.fileno()}"))
        except OSError:
            opened = None  # no /proc: the check before opening stands
        if opened is not None and not opened.is_relative_to(root):
            raise outside(root, relative_name(root, path))
        return handle.read().decode("utf-8")


def entries(root: Path, folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted, each :func:`confined` to ``root``."""
    return sorted(confined(root, entry) for entry in folder.iterdir())


def files_under(root: Path, folder: Path) -> Iterator[Path]:
    """The files under ``folder`` (recursively), each :func:`confined` to ``root``.

    Symlinked folders are checked but not walked into, so that a link can make no cycle.
    """
    stack = [folder]
    while stack:
        for entry in entries(root, stack.pop()):
            if entry.is_dir():
                if not entry.is_symlink():
                    stack.append(entry)
            elif entry.is_file():
                yield entry


def shown(names: Iterable[str]) -> str:
    """Names read from a data set, for a message: escaped, each cut to SHOWN_NAME_CHARS, at most SHOWN_NAMES."""
    names = list(names)
    parts = []
    for name in names[:SHOWN_NAMES]:
        short = name if len(name) <= SHOWN_NAME_CHARS else name[: SHOWN_NAME_CHARS - 1] + "…"
        parts.append("".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in short))
    more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
    return ", ".join(parts) + more
