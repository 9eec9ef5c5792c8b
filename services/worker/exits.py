"""Why a work process ended, in words the control plane records: how RQ's work horse turns an
unexpected exit into a failure with a reason, plus what it means for the attempt (success,
failed, reset, terminated)."""
from __future__ import annotations

import signal
from pathlib import Path

from trainfaas.services.core.statuses import Outcome
from trainfaas.services.worker.work_process import Running

# Signals that mean the platform stopped the work process (an operator, the instance, a lost
# machine), not that its code failed: the attempt is reset, not failed.
RESET_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}
USER = "user"  # the stop reason of an attempt a user stopped
UNOBSERVED = 255  # the exit code multiprocessing gives a work process whose fork server died


def oom_kill_count() -> int:
    """Kernel OOM kills so far in this process's memory cgroup (v2 or v1); 0 where unreadable."""
    for path, key in (("/sys/fs/cgroup/memory.events", "oom_kill"), ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")):
        try:
            for line in Path(path).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            continue
    return 0


def describe_exit(run: Running, exitcode: int | None) -> tuple[Outcome, str]:
    """Turn how a work process ended into (outcome, reason) for the control plane."""
    if run.result is not None:
        if run.stop_reason == USER:
            return Outcome.TERMINATED, "stopped by user; the function stopped and returned"
        if run.stop_reason:
            return Outcome.RESET, run.stop_reason
        return Outcome.SUCCESS, "succeeded"
    if run.stop_reason and run.stop_reason != USER:
        return Outcome.RESET, run.stop_reason
    if run.error is not None:
        if run.error.error == "MemoryError":
            return Outcome.FAILED, f"out of memory: {run.error.message}{_peak(run)}"
        return Outcome.FAILED, f"{run.error.error}: {run.error.message}"
    if exitcode is not None and exitcode < 0:
        return _killed(run, signal.Signals(-exitcode))
    if run.stop_reason == USER:
        return Outcome.TERMINATED, "stopped by user"
    if exitcode is None or (exitcode == UNOBSERVED and not run.exit_observed()):
        return _lost(run)
    return Outcome.FAILED, f"work process exited with code {exitcode} without a result"


def _lost(run: Running) -> tuple[Outcome, str]:
    # Its fork server, which observes its exit, was killed with it (a kill of the process group,
    # say): how it ended is unknown, and the platform, not the code, lost it. Unless the kernel
    # killed for memory meanwhile: that, as for a SIGKILL seen, is the training's own doing.
    if oom_kill_count() > run.oom_kills_before:
        return Outcome.FAILED, f"OOMKilled: the kernel killed for memory and took the work process with its fork server{_peak(run)}"
    return Outcome.RESET, "work process lost: its fork server was killed, so its exit was not observed"


def _killed(run: Running, sig: signal.Signals) -> tuple[Outcome, str]:
    if sig == signal.SIGKILL and oom_kill_count() > run.oom_kills_before:
        return Outcome.FAILED, f"OOMKilled: the work process ran out of memory and the kernel killed it (SIGKILL){_peak(run)}"
    if run.stop_reason == USER:
        return Outcome.TERMINATED, f"stopped by user; the work process was killed ({sig.name})"
    if sig in RESET_SIGNALS:
        return Outcome.RESET, f"work process killed by {sig.name} (signal {sig.value})"
    return Outcome.FAILED, f"work process crashed with {sig.name} (signal {sig.value})"


def _peak(run: Running) -> str:
    """The peak memory the instance saw the work process use, for an out-of-memory reason."""
    return run.usage.peak_words() if run.usage is not None else ""
