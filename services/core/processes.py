"""Child processes that end with their parent, processes an earlier run left behind, and a work process's malloc."""
from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

PR_SET_PDEATHSIG = 1


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    """The C library this process runs with (its prctl, mallopt and malloc_trim); OSError where there is none."""
    return ctypes.CDLL(None, use_errno=True)


def end_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent ends (Linux; a no-op
    elsewhere). Meant as a ``preexec_fn``: it runs in the child between fork and exec.

    The kernel sends the signal when the *thread* that forked the child ends, so only a
    long-lived thread (the main thread of ``trainfaas up``) may start children this way.
    """
    try:
        _libc().prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def ending_with_this_thread() -> Callable[[], None] | None:
    """``end_with_parent`` as a ``preexec_fn`` when the caller is the main thread, else None.

    The kernel signals a child when the thread that started it ends: a child started from a
    passing thread (a restart by a worker thread) would be stopped when that thread is done.
    """
    return end_with_parent if threading.current_thread() is threading.main_thread() else None


def command_line(pid: int) -> list[str]:
    """The process's arguments, [] when it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\x00") if part]


def parent_of(pid: int) -> int | None:
    """The parent pid of a live process, None when it is gone (or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[1])


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return parent_of(pid) is not None


# glibc's mallopt parameters (malloc.h), the largest mmap threshold it takes on 64-bit systems, and
# the environment variable that turns keep_freed_memory off.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
LARGEST_MMAP_THRESHOLD = 32 * 1024 * 1024
KEEP_FREED_MEMORY = "TRAINFAAS_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Make malloc keep what this process frees for its next allocations (glibc on Linux; elsewhere,
    or with TRAINFAAS_KEEP_FREED_MEMORY=false, nothing changes). Returns whether it took effect.

    A training step frees and allocates the same tensors step after step. With glibc's defaults the
    free top of the heap is handed back to the kernel once it passes a threshold, and a block over
    the mmap threshold (128 KB at first, adjusted as blocks are freed) is a mapping of its own, gone
    when freed: each step then faults thousands of fresh zeroed pages in again (about 4,600 a step
    for resnet18 on 16-pixel images, 10,000 to 14,000 on 64-pixel ones). Here the heap is never
    trimmed and every block up to 32 MB comes from it, so freed blocks are reused; larger ones stay
    mappings of their own, given back when freed, as before. The heap stays at its peak until the
    process ends or calls :func:`release_freed_memory`.
    """
    if not _keeping():
        return False
    try:
        mallopt = _libc().mallopt
    except (OSError, AttributeError):
        return False
    # Each returns 1 when glibc took the value; -1 for the trim threshold is "never trim" (mallopt(3)).
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST_MMAP_THRESHOLD)) & bool(mallopt(M_TRIM_THRESHOLD, -1))


def _keeping() -> bool:
    """TRAINFAAS_KEEP_FREED_MEMORY, read as the settings read it (services/core/settings.py: keep_freed_memory;
    an instance with a value they refuse does not start, so such a value never reaches a work process)."""
    try:
        return TypeAdapter(bool).validate_python(os.environ.get(KEEP_FREED_MEMORY, "true"))
    except ValidationError:
        return True


def release_freed_memory() -> None:
    """Hand what keep_freed_memory kept back to the kernel (glibc's malloc_trim; a no-op elsewhere, or with
    the setting off, where glibc trims by itself)."""
    if not _keeping():
        return
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass
