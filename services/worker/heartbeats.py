"""The instance's heartbeat, and the finishes of its attempts, each sent from a thread of its own.

The main loop may wait on the control plane (a report or a finish it is slow to take, retried
while it is unreachable); the heartbeat goes on meanwhile, so that a busy instance never looks
like a dead one. The main loop says what the next heartbeat tells (``beat``) and applies the
answers (``replies``) itself: only the main loop touches the work processes.

A finish goes from a thread too (:class:`Finishes`): the main loop takes the next execution off the
queue while the control plane records how the last one ended (a short execution's round trip is as
long as its run); or, when the next execution is there already, the finish goes with its claim.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from trainfaas.services.core import logs
from trainfaas.services.core.protocol import FINISHED_PER_CLAIM, Finish, FinishAnswer, Heartbeat, HeartbeatReply
from trainfaas.services.worker.control_plane import ControlPlane, Rejected

log = logging.getLogger("trainfaas.instance")

FINISH_LINGER_S = 0.1  # how long a finish waits for the next claim to take it along
CARRIED_EVENTS = 100  # a finish with more events than this goes on its own
CARRIED_BYTES = 64 * 1024  # and so does one larger than this as JSON


class Heartbeats:
    """Sends ``beat`` every ``interval_s`` (the first at once) until stopped."""

    def __init__(self, api: ControlPlane, interval_s: float) -> None:
        self.api = api.twin()
        self.interval_s = interval_s
        self.beat = Heartbeat()  # replaced whole by the main loop; read whole by the thread
        self._answers: queue.SimpleQueue[tuple[Heartbeat, HeartbeatReply]] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Send no more heartbeats (waits for one in flight, up to the call's timeout)."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.api.timeout_s + 1.0)

    def replies(self) -> list[tuple[Heartbeat, HeartbeatReply]]:
        """The answers received since the last call, oldest first, each with the heartbeat it
        answers (what the instance ran then may have changed since)."""
        answers = []
        while not self._answers.empty():
            answers.append(self._answers.get_nowait())
        return answers

    def _run(self) -> None:
        while not self._stopped.is_set():
            beat = self.beat
            try:
                self._answers.put((beat, self.api.heartbeat(beat)))
            except (requests.RequestException, Rejected) as exc:
                log.warning("instance %s: heartbeat failed (%s)", self.api.instance_id, exc)
            self._stopped.wait(self.interval_s)


class Finishes:
    """Sends each attempt's Finish, in the order given, with ``retry`` (the instance's retry of
    calls the control plane could not take).

    A finish first waits up to ``linger_s`` for the instance's next claim to take it along
    (:meth:`take`, then :meth:`settle` or :meth:`give_back`): one round trip for both. The instance
    lets them go at once (:meth:`release`) when it finds nothing to claim; one not taken in time is
    sent on its own. Only a small finish goes with a claim (``CARRIED_BYTES`` as JSON at most)."""

    def __init__(self, api: ControlPlane, retry: Callable[[Callable[[], Any], str], Any], linger_s: float = FINISH_LINGER_S) -> None:
        self.api = api.twin()
        self.retry = retry
        self.linger_s = linger_s
        self._pending: list[_Pending] = []
        self._busy = 0  # finishes on their way: sent by the thread, or taken along by a claim
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="finishes", daemon=True)
        self._thread.start()

    def send(self, execution_id: str, report: Finish, label: str) -> None:
        size = len(report.model_dump_json()) if len(report.events) <= CARRIED_EVENTS else CARRIED_BYTES + 1
        with self._changed:
            self._pending.append(_Pending(time.monotonic() + self.linger_s, execution_id, report, label, size))
            self._changed.notify_all()

    def waiting(self) -> bool:
        """Whether a finish waits for a claim to take it along (one released waits for nothing)."""
        with self._changed:
            return any(pending.due > 0.0 for pending in self._pending)

    def release(self) -> None:
        """Nothing to claim now: send the waiting finishes on their own, at once."""
        with self._changed:
            for pending in self._pending:
                pending.due = 0.0
            self._changed.notify_all()

    def take(self, most: int = FINISHED_PER_CLAIM) -> list[_Pending]:
        """The oldest waiting finishes, up to ``most``, small enough to go with a claim; the caller
        sends them and then calls :meth:`settle` or :meth:`give_back` with them."""
        with self._changed:
            taken: list[_Pending] = []
            while self._pending and len(taken) < most and self._pending[0].size <= CARRIED_BYTES:
                taken.append(self._pending.pop(0))
            self._busy += len(taken)
            return taken

    def settle(self, taken: list[_Pending], answers: list[FinishAnswer]) -> None:
        """The control plane answered the finishes taken along: log those it refused."""
        for pending, answer in zip(taken, answers, strict=False):
            if answer.refused is not None:
                log.warning("instance %s: result of %s refused: %s: %s", self.api.instance_id, pending.label, answer.refused.status,
                            answer.refused.message, extra=logs.attempt_fields(pending.execution_id, pending.report.attempt))
        self._done(len(taken))

    def give_back(self, taken: list[_Pending]) -> None:
        """The claim that took them along failed as a whole: they go on their own, at once, first."""
        with self._changed:
            for pending in taken:
                pending.due = 0.0
            self._pending[:0] = taken
            self._busy -= len(taken)
            self._changed.notify_all()

    def wait(self, timeout_s: float) -> bool:
        """Send what waits at once, then wait until every finish given was sent (or given up); False if
        some still wait after ``timeout_s``."""
        self.release()
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while (self._pending or self._busy) and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            return not (self._pending or self._busy)

    def _done(self, count: int) -> None:
        with self._changed:
            self._busy -= count
            self._changed.notify_all()

    def _next(self) -> _Pending:
        """The oldest finish, once it is due (or released)."""
        with self._changed:
            while True:
                now = time.monotonic()
                if self._pending and self._pending[0].due <= now:
                    self._busy += 1
                    return self._pending.pop(0)
                self._changed.wait(self._pending[0].due - now if self._pending else None)

    def _run(self) -> None:
        while True:
            pending = self._next()
            execution_id, report, label = pending.execution_id, pending.report, pending.label
            fields = logs.attempt_fields(execution_id, report.attempt)
            try:
                self.retry(lambda: self.api.finish(execution_id, report), "finish")  # noqa: B023 - called at once
            except Rejected as exc:
                log.warning("instance %s: result of %s refused: %s", self.api.instance_id, label, exc, extra=fields)
            except requests.RequestException as exc:
                log.error("instance %s: result of %s not delivered (%s); the reaper will reset it", self.api.instance_id, label, exc,
                          extra=fields)
            except Exception:  # noqa: BLE001 - the thread must go on finishing the others
                log.exception("instance %s: result of %s not delivered", self.api.instance_id, label, extra=fields)
            finally:
                self._done(1)


@dataclass
class _Pending:
    due: float  # monotonic time at which the thread sends it, unless a claim took it along
    execution_id: str
    report: Finish
    label: str
    size: int  # bytes as JSON (more than CARRIED_BYTES when not measured)


def end_with_parent(parent_pid: int, interval_s: float = 1.0, grace_s: float = 10.0) -> threading.Thread:
    """Watch the process that started this one (``trainfaas up``'s scheduler); when it is gone,
    stop as on a second SIGTERM (what runs is stopped), and exit after ``grace_s`` even if the
    control plane, gone with the stack, cannot be told: the next stack's reaper finds the
    instance silent and reruns its executions.

    A thread of its own, not a parent-death signal: the kernel would send that when the
    scheduler's *thread* that started the instance ends, not the scheduler."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        log.warning("the stack that started this instance (pid %s) is gone: stopping", parent_pid)
        for _ in range(2):  # the first signal drains, the second stops what is left
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(interval_s)
        time.sleep(grace_s)
        log.warning("the control plane did not answer within %.0f s: exiting", grace_s)
        os._exit(3)  # its fork server and work processes end with it (parent-death signals)

    thread = threading.Thread(target=watch, name="end-with-parent", daemon=True)
    thread.start()
    return thread
