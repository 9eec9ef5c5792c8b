"""The instance's heartbeat, sent from a thread of its own.

The main loop may wait on the control plane (a report or a finish it is slow to take, retried
while it is unreachable); the heartbeat goes on meanwhile, so that a busy instance never looks
like a dead one. The main loop says what the next heartbeat tells (``beat``) and applies the
answers (``replies``) itself: only the main loop touches the work processes.
"""
from __future__ import annotations

import logging
import queue
import threading

import requests

from trainfaas.services.core.protocol import Heartbeat, HeartbeatReply
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
