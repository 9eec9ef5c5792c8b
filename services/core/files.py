"""Writing files so that a crash never leaves half of one: write beside it, then rename over it."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it replaces
    ``path`` (with ``mode`` when given), otherwise it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(descriptor)
    partial = Path(name)
    try:
        yield partial
        if mode is not None:
            os.chmod(partial, mode)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, write: Callable[[IO[bytes]], object], mode: int | None = None) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``."""
    with atomic_path(path, mode) as partial, open(partial, "wb") as handle:
        write(handle)


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()), mode)


def atomic_copy(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` so that ``path`` is either the old file or the whole copy."""
    with atomic_path(path) as partial:
        shutil.copyfile(source, partial)


def copy_regular(source: Path, path: Path) -> bool:
    """Copy ``source`` to ``path`` atomically if it is a regular file, opened without following a link
    (a link planted by training code is never followed); False, and nothing written, otherwise."""
    try:
        descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return False
        with atomic_path(path) as partial, open(partial, "wb") as target:
            shutil.copyfileobj(handle, target, 1024 * 1024)
    return True


def atomic_link_or_copy(source: Path, path: Path) -> None:
    """Make ``path`` a hard link to ``source`` where the file system has them, else a copy, so that
    ``path`` is either the old file or the whole new one. Only for files that are replaced, never
    written in place (a link shares every later change)."""
    with atomic_path(path) as partial:
        partial.unlink()
        try:
            os.link(source, partial)
        except OSError:
            shutil.copyfile(source, partial)
