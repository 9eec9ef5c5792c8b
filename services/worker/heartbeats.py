"""The instance's heartbeat, and the finishes of its attempts, each sent from a thread of its own.

The main loop may wait on the control plane (a report or a finish it is slow to take, retried
while it is unreachable); the heartbeat goes on meanwhile, so that a busy instance never looks
like a dead one. The main loop says what the next heartbeat tells (``beat``) and applies the
answers (``replies``) itself: only the main loop touches the work processes.

A finish goes from a thread too (:class:`Finishes`): the main loop takes the next execution off the
queue while the control plane records how the last one ended (a short execution's round trip is as
long as its run).
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from trainfaas.services.core import logs
from trainfaas.services.core.protocol import Finish, Heartbeat, HeartbeatReply
from trainfaas.services.worker.control_plane import ControlPlane, Rejected

log = logging.getLogger("trainfaas.instance")


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
    calls the control plane could not take)."""

    def __init__(self, api: ControlPlane, retry: Callable[[Callable[[], Any], str], Any]) -> None:
        self.api = api.twin()
        self.retry = retry
        self._queue: queue.Queue[tuple[str, Finish, str]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="finishes", daemon=True)
        self._thread.start()

    def send(self, execution_id: str, report: Finish, label: str) -> None:
        self._queue.put((execution_id, report, label))

    def wait(self, timeout_s: float) -> bool:
        """Wait until every finish given was sent (or given up); False if some still wait after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _run(self) -> None:
        while True:
            execution_id, report, label = self._queue.get()
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
                self._queue.task_done()


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
