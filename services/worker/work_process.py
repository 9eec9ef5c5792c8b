"""Work processes as their instance sees them: one started ahead and waiting (a spare), and one
running an attempt, whose messages (trainfaas.services.core.protocol) the instance collects.

Work processes come from a fork server: a clean process started once (spawn-like, so it never
holds CUDA state or the instance's threads) that forks each work process. Forking from it is
fast, and each attempt still gets a process of its own. A work process learns how it ended
from its fork server, its parent: if the fork server was killed too, nobody observed the exit and
multiprocessing reports code 255. The next start starts a new fork server.

The pipe carries bytes, never pickles: the spec goes to the work process as JSON, and the
instance reads each message of the work process as JSON of the protocol (at most
MAX_WORK_MESSAGE_BYTES), so adapter code cannot make the instance, which holds its token, run
anything. A message that is not one fails the attempt, and the work process is killed.
"""
from __future__ import annotations

import logging
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from trainfaas.functions.isolation import WorkUser
from trainfaas.functions.run import standby
from trainfaas.services.core.protocol import (
    MAX_WORK_MESSAGE_BYTES,
    Done,
    Failure,
    Metric,
    ReportedEvent,
    Result,
    WorkSpec,
    decode_work_message,
    finite,
)
from trainfaas.services.worker.usage import FIGURE as USAGE_FIGURE
from trainfaas.services.worker.usage import UsageWatch

log = logging.getLogger("trainfaas.instance")

# The fork server imports only the function runner and lists the adapters' entry points
# (trainfaas.functions.preload); the adapter is imported by the waiting spare.
PRELOAD = ["trainfaas.functions.preload"]
SERVER_EXIT_GRACE_S = 0.5  # how long a fork server that closed its sockets may take to become a zombie
PROTOCOL_ERROR = "ProtocolError"  # the error of an attempt whose work process sent something else than the protocol


def work_process_context() -> Any:
    """The multiprocessing context work processes start from (see the module's docstring)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def parent_and_state(pid: int | None) -> tuple[int | None, str]:
    """A process's parent pid and state letter (``Z`` for a zombie) from /proc; (None, "")
    once it is gone (reaped) or where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[0]
    except (OSError, IndexError, ValueError):
        return None, ""


def alive(pid: int | None) -> bool:
    """Whether process ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    return pid is not None and parent_and_state(pid)[1] not in ("", "Z", "X")


@dataclass
class Spare:
    """A started work process waiting for the spec of the attempt it will run."""

    process: Any
    conn: Connection
    stop_event: Any
    server_pid: int | None = None  # the fork server it was forked from, its parent
    serves: tuple[str, str] | None = None  # a warm process: the (project, function) it ran attempts of

    @classmethod
    def start(cls, context: Any, architecture: str, adapters: str, name: str, user: WorkUser | None = None) -> Spare:
        """Start a work process that becomes ``user`` (when given), imports ``architecture``'s
        adapter and waits for one spec (see trainfaas.functions.run.standby)."""
        parent_end, child_end = context.Pipe(duplex=True)
        stop_event = context.Event()
        process = context.Process(target=standby, args=(child_end, stop_event, architecture, adapters, user), name=name)
        process.start()
        child_end.close()
        return cls(process, parent_end, stop_event, parent_and_state(process.pid)[0])

    def reusable(self) -> bool:
        """Whether this warm process can take the next attempt: alive, and silent since its Done
        (whatever it sent after that belongs to no attempt, so the process is not trusted again)."""
        try:
            return bool(self.process.is_alive() and not self.conn.poll())
        except (OSError, EOFError):
            return False

    def close(self) -> None:
        """Let the waiting process go: it reads EOF and exits (killed if it does not)."""
        self.conn.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()


@dataclass
class Running:
    """One attempt running in a work process, as the instance sees it."""

    execution_id: str
    attempt: int
    process: Any
    conn: Connection
    stop_event: Any
    deadline: float
    drain_time_s: float
    started: float = field(default_factory=time.monotonic)
    result: Result | None = None
    error: Failure | None = None
    stop_reason: str | None = None  # why the instance stopped it: None, "user", or a reset reason
    kill_at: float | None = None
    oom_kills_before: int = 0
    function: str = ""
    server_pid: int | None = None
    usage: UsageWatch | None = None  # what its work process uses, measured by the instance
    warm: bool = False  # run_as_process false: the process ends the attempt with Done and may take the next
    project: str = ""
    done: bool = False  # its Done arrived: nothing read after it is this attempt's

    def exit_observed(self) -> bool:
        """Whether the exit code is the work process's own: its fork server, which reports it,
        is still alive. If the fork server died first, multiprocessing says 255 whatever happened.
        A fork server that is being killed closes its sockets (so the 255 arrives) a moment before
        it turns into a zombie: it gets ``SERVER_EXIT_GRACE_S`` to show that it is dying."""
        deadline = time.monotonic() + SERVER_EXIT_GRACE_S
        while alive(self.server_pid):
            if time.monotonic() >= deadline:
                return True
            time.sleep(0.01)
        return False

    @classmethod
    def hand(cls, spare: Spare, spec: WorkSpec, timeout_s: float, drain_time_s: float, oom_kills_before: int,
             usage_interval_s: float = 5.0, project: str = "") -> Running:
        """Give ``spec`` to ``spare``, which runs it from now on; its usage is sampled every ``usage_interval_s``.
        A warm process (one that ran attempts before) gets its stop event cleared first: each attempt starts unstopped."""
        spare.stop_event.clear()
        run = cls(spec.execution_id, spec.attempt, spare.process, spare.conn, spare.stop_event,
                  deadline=time.monotonic() + timeout_s, drain_time_s=drain_time_s,
                  oom_kills_before=oom_kills_before, function=spec.function, server_pid=spare.server_pid,
                  usage=UsageWatch(spare.process.pid, usage_interval_s), warm=spec.warm, project=project)
        try:
            spare.conn.send_bytes(spec.model_dump_json().encode())
        except (BrokenPipeError, OSError):
            pass  # the spare died while waiting; the watcher turns its exit into a reason
        return run

    @property
    def label(self) -> str:
        return f"execution {self.execution_id} attempt {self.attempt}"

    def idle(self) -> Spare:
        """The warm process of this attempt, ended with its Done, waiting for the next spec of its project and function."""
        return Spare(self.process, self.conn, self.stop_event, self.server_pid, serves=(self.project, self.function))

    def receive(self) -> list[ReportedEvent]:
        """Read what the work process sent so far: its events, to forward, and its last word
        (kept in ``result`` or ``error``). Something else than JSON of the protocol fails the
        attempt and kills the work process: nothing it sends after that is read."""
        events: list[ReportedEvent] = []
        try:
            while not self.done and (self.error is None or self.error.error != PROTOCOL_ERROR):
                if not self.conn.poll():
                    break
                self._take(self.conn.recv_bytes(MAX_WORK_MESSAGE_BYTES), events)
        except (EOFError, OSError) as exc:
            if "bad message length" in str(exc):
                self._refuse(f"a message over {MAX_WORK_MESSAGE_BYTES} bytes")
        return events

    def _take(self, data: bytes, events: list[ReportedEvent]) -> None:
        try:
            message = decode_work_message(data)
        except ValueError as exc:
            self._refuse(f"{len(data)} bytes that are not a message of the protocol ({str(exc)[:300]})")
            return
        if isinstance(message, Result):
            # JSON has no NaN or infinity: such a final figure is stored as null.
            self.result = message.model_copy(update={"output": finite(message.output)})
        elif isinstance(message, Metric) and not message.is_finite:
            log.warning("%s: metric %s/%s sample (%s, %s) is not a finite number; dropped",
                        self.label, message.figure, message.legend, message.x, message.y)
        elif isinstance(message, Metric) and message.figure == USAGE_FIGURE:
            # The instance measures usage itself: samples of that figure from the code it watches would forge them.
            log.warning("%s: metric figure %r is the instance's own; the work process's sample is dropped", self.label, USAGE_FIGURE)
        elif isinstance(message, Failure):
            self.error = message
        elif isinstance(message, Done):
            self._end(message)
        else:
            events.append(ReportedEvent(execution_id=self.execution_id, attempt=self.attempt, at=time.time(), event=message))

    def _end(self, done: Done) -> None:
        """The Done of a warm process: the end of this attempt, after its Result or Failure."""
        if not self.warm:
            self._refuse("a Done message, which only a warm work process sends")
        elif (done.execution_id, done.attempt) != (self.execution_id, self.attempt):
            self._refuse(f"the Done of another attempt ({done.execution_id} attempt {done.attempt})")
        elif self.result is None and self.error is None:
            self._refuse("a Done message before the attempt's Result or Failure")
        else:
            self.done = True

    def _refuse(self, what: str) -> None:
        log.error("%s: the work process sent %s; killing it", self.label, what)
        self.result = None
        self.error = Failure(error=PROTOCOL_ERROR, message=f"the work process sent {what}: its instance reads only JSON"
                                                           " messages of the protocol (trainfaas.services.core.protocol)")
        if self.process.is_alive():
            self.process.kill()
