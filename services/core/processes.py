"""Child processes that end with their parent, and finding processes an earlier run left behind."""
from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1


def end_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent ends (Linux; a no-op
    elsewhere). Meant as a ``preexec_fn``: it runs in the child between fork and exec.

    The kernel sends the signal when the *thread* that forked the child ends, so only a
    long-lived thread (the main thread of ``trainfaas up``) may start children this way.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
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
