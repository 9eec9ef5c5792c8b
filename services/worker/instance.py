"""An instance of a service: pulls executions from the service's queue and runs each attempt in
a monitored work process (RQ's work-horse idea; see trainfaas.services.worker.work_process).

The instance holds Redis (transport) and its own instance token; it reports everything through
the control plane (trainfaas.services.worker.control_plane). Its work processes get neither: they
run as the work user when the instance is root (trainfaas.functions.isolation), and they reach the
instance only through a pipe of JSON messages. It
sends heartbeats, enforces timeouts, turns abnormal exits into readable reasons
(trainfaas.services.worker.exits), and drains on SIGTERM: stop pulling, wait up to the
execution's drain time, then reset what is still running.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, TypeVar

import redis
import requests

from trainfaas.functions.isolation import not_dumpable, prepare_attempt, unreadable_by, work_user
from trainfaas.services.core import logs
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.protocol import (
    TRAIN_MODEL,
    ClaimReply,
    Finish,
    Finished,
    Heartbeat,
    HeartbeatReply,
    Refusal,
    ReportedEvent,
    RunningEntry,
    WorkSpec,
)
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import InstanceStatus
from trainfaas.services.store import queues
from trainfaas.services.worker.control_plane import ControlPlane, Rejected, retryable
from trainfaas.services.worker.exits import USER, describe_exit, oom_kill_count
from trainfaas.services.worker.heartbeats import Finishes, Heartbeats, end_with_parent
from trainfaas.services.worker.usage import Gpus
from trainfaas.services.worker.work_process import Running, Spare, work_process_context

log = logging.getLogger("trainfaas.instance")

# Environment variables that carry credentials. The instance keeps what it needs in memory and
# removes them from its environment so that no work process (adapter code) inherits them.
SECRET_ENV = ("TRAINFAAS_DATABASE_URL", "TRAINFAAS_REDIS_URL", "TRAINFAAS_INSTANCE_TOKEN", "TRAINFAAS_TOKEN",
              "TRAINFAAS_REGISTRATION_TOKEN", "TRAINFAAS_REGISTRATION_TOKEN_FD", "TRAINFAAS_INSTANCE_SECRET")
STOP_GRACE_S = 1.0
REPORT_BATCH = 5000  # events per report call
OUTBOX_LIMIT = 100000  # events kept while the control plane cannot be reached
ABANDONED = "abandoned"  # the stop reason of an attempt that is no longer this instance's
QUOTA_WAIT_S = 1.0  # pause after a claim refused for its project's running limit
LEAVE_GRACE_S = 5.0  # how long a work process that sent its last word may take to exit before it is killed

Answer = TypeVar("Answer")


class InstanceProcess:
    """The main loop of one instance. ``run()`` returns when it has drained and deregistered."""

    def __init__(self, settings: Settings, service: str, instance_id: str | None = None,
                 concurrency: int | None = None, backend: str = "process", prestart: bool = True) -> None:
        self.settings = settings
        self.service = service
        self.instance_id = instance_id
        self.concurrency = concurrency
        self.backend = backend
        self.redis = queues.connect(settings.redis_url)
        self.queue_key = queues.get_queue(self.redis, service).key
        self.api = ControlPlane(settings.api_url, registration=self._registration(settings))
        self.mp = work_process_context()
        self.work_user = work_user(settings.work_user)
        self.running: dict[str, Running] = {}
        self.spare: Spare | None = None
        self.idle: list[Spare] = []  # warm work processes (run_as_process false) between attempts, oldest first
        self.leaving: list[tuple[Any, float]] = []  # (work process, kill after) of attempts finished before their exit
        self.prestart = prestart
        self.architecture = service.removeprefix(queues.SERVICE_PREFIX)
        self.outbox: list[ReportedEvent] = []
        self.draining = False
        self.paused = False
        self.drain_started: float | None = None
        self.stop_now = False
        self.heartbeats: Heartbeats | None = None
        self.finishes: Finishes | None = None  # sends each attempt's finish while the loop goes on
        self.last_flush = 0.0
        self.hold_until = 0.0  # no pulls before (monotonic s): the last claim met a project's running limit
        self.gpus: Gpus | None = None  # NVML, opened at the first sample of usage

    @staticmethod
    def _registration(settings: Settings) -> str:
        # Instances the scheduler starts carry their service's registration token: the process
        # backend in a pipe (registration_token_fd), containers in their environment. One started
        # by hand registers with the admin token (TRAINFAAS_TOKEN or home/admin-token).
        if settings.registration_token_fd is not None:
            return read_token(settings.registration_token_fd)
        registration = settings.registration_token or settings.token
        if not registration and settings.admin_token_path.exists():
            registration = settings.admin_token_path.read_text().strip()
        return registration

    @property
    def full(self) -> bool:
        return len(self.running) >= (self.concurrency or 1)

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> None:
        for name in SECRET_ENV:
            os.environ.pop(name, None)
        not_dumpable()  # its memory holds its token: no ptrace, no /proc/<pid>/mem by its own user
        self._tell_work_user()
        # Handle SIGTERM from the start: an instance stopped while it registers must still drain.
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self.settings.end_with_pid:
            end_with_parent(self.settings.end_with_pid)
        registered = self._retry(lambda: self.api.register(self.service, self.instance_id, self.backend), "register")
        self.instance_id = self.api.instance_id
        self.concurrency = self.concurrency or int(registered["concurrency"])
        logs.bind(service=self.service, instance=self.instance_id)
        log.info("instance %s serving %s (pid %s, concurrency %s)", self.instance_id, self.service, os.getpid(), self.concurrency)
        self.heartbeats = Heartbeats(self.api, self.settings.heartbeat_interval_s)
        self.heartbeats.beat = self._beat()
        self.heartbeats.start()
        self.finishes = Finishes(self.api, self._retry)
        self._keep_spare()
        try:
            while not (self.draining and not self.running):
                self._step()
        finally:
            self.heartbeats.stop()
            self._drop_spare()
            while self.idle:
                self.idle.pop().close()
            for process, _ in self.leaving:
                process.kill()
            self._flush()
            if self.finishes is not None and not self.finishes.wait(timeout_s=150.0):
                log.error("instance %s: finishes not all delivered; the reaper resets those attempts", self.instance_id)
            reason = "drained" if not self.stop_now else "stopped"
            try:
                self.api.deregister(reason)
            except (requests.RequestException, Rejected) as exc:
                log.warning("instance %s could not deregister: %s", self.instance_id, exc)
            log.info("instance %s exited (%s)", self.instance_id, reason)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.draining:
            # A second signal means now: stop what is left; it is reset (and rerun if allowed).
            self.stop_now = True
            log.info("instance %s: stopping now", self.instance_id)
            return
        self.draining = True
        self.drain_started = time.monotonic()
        longest = max((run.drain_time_s for run in self.running.values()), default=0.0)
        log.info("instance %s draining: %d running, up to %.0f s", self.instance_id, len(self.running), longest)

    def _retry(self, call: Callable[[], Answer], what: str, limit_s: float = 120.0) -> Answer:
        deadline = time.monotonic() + limit_s
        delay_s = 0.2
        while True:
            try:
                return call()
            except requests.RequestException as exc:
                if not retryable(exc) or time.monotonic() > deadline:
                    raise
                log.warning("instance %s: %s failed (%s); retrying in %.1f s", self.instance_id, what, exc, delay_s)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    # -- the loop -------------------------------------------------------------------------------

    def _step(self) -> None:
        if not self.draining and not self.paused and not self.full and time.monotonic() >= self.hold_until:
            self._pull(block=not self.running)
        elif not self.running:
            time.sleep(0.2)  # nothing to watch and nothing to pull: wait for the next heartbeat
        self._watch(timeout_s=0.2 if self.running else 0.0)
        now = time.monotonic()
        self._enforce_deadlines(now)
        self._reap_leaving(now)
        for run in list(self.running.values()):
            if run.usage is not None and run.usage.due(now):
                self._measure(run, now)
        if self.spare is not None and not self.spare.process.is_alive():
            self._drop_spare()  # it died waiting (its fork server was killed, say): start another
        if self.spare is None:
            self._keep_spare()
        if now - self.last_flush >= 0.5:
            self._flush()
        if self.heartbeats is not None:
            self.heartbeats.beat = self._beat()
            for beat, answer in self.heartbeats.replies():
                self._answered(beat, answer)

    def _pull(self, block: bool) -> None:
        """Take the next job from the queue onto this instance's held list (queues.take), claim its
        execution and start it; the job leaves the held list once the claim has answered."""
        # A finish waiting for the next claim to take it along (see Finishes) must not wait for work
        # to arrive: look without waiting first, and let the finishes go when there is none.
        carrying = self.finishes is not None and self.finishes.waiting()
        try:
            job_id = queues.take(self.redis, self.queue_key, self.instance_id, timeout_s=1 if block and not carrying else None)
        except redis.RedisError as exc:
            log.warning("instance %s: cannot reach Redis (%s)", self.instance_id, exc)
            time.sleep(1.0)
            return
        if not job_id and carrying and self.finishes is not None:
            self.finishes.release()
        if job_id and self.draining:
            self._put_back(job_id)
        elif job_id:
            claimed = self._claim(job_id)
            if claimed is not None:
                self._start(claimed)

    def _put_back(self, job_id: str) -> None:
        """The stop signal came while the pull waited: the job goes back first in line, for another
        instance, and this one starts nothing more. Should Redis fail now, the execution is still
        waiting in the database and the reconciler queues it again."""
        execution_id, attempt = queues.parse_job_id(job_id)
        if not self._unhold(job_id, again="front"):
            return
        log.info("instance %s: draining; execution %s attempt %s put back first in line", self.instance_id, execution_id, attempt,
                 extra=logs.attempt_fields(execution_id, attempt))

    def _unhold(self, job_id: str, again: str | None = None) -> bool:
        """Drop the job from the held list (queues.release: back on the queue with ``again``); False
        when Redis fails: the next pull empties the held list, and the reconciler queues the job again."""
        try:
            queues.release(self.redis, self.service, self.instance_id, job_id, again=again)
            return True
        except redis.RedisError as exc:
            log.warning("instance %s: cannot release job %s (%s)", self.instance_id, job_id, exc)
            return False

    def _claim(self, job_id: str) -> ClaimReply | None:
        """Claim the job's execution from the control plane; None when it was refused or the API stayed away."""
        execution_id, attempt = queues.parse_job_id(job_id)
        again: str | None = None  # where the job goes back on the queue, after a refusal that asks for it
        try:
            return self._claim_after(execution_id, attempt)
        except Rejected as exc:
            log.info("instance %s: execution %s attempt %s not claimed: %s", self.instance_id, execution_id, attempt, exc,
                     extra=logs.attempt_fields(execution_id, attempt))
            if exc.code == "service_paused":
                self.paused = True
                again = "front"  # it stays first in line
            elif exc.code == "instance_retired":
                again = "front"  # for the instances that replace this one, which drains now
                if not self.draining:
                    self._on_signal(signal.SIGTERM, None)
            elif exc.code == "project_running_limit":
                # Its project runs its most executions: back of the line, so that other projects'
                # executions behind it start; and a pause, so that a queue of only those is no busy loop.
                again = "back"
                self.hold_until = time.monotonic() + QUOTA_WAIT_S
            return None
        except requests.RequestException:
            # The API stayed away; the execution is still pending in the DB and the reconciler
            # puts it back on the queue.
            return None
        finally:
            self._unhold(job_id, again=again)

    def _claim_after(self, execution_id: str, attempt: int) -> ClaimReply:
        """Claim, taking along the finishes that wait for it (one round trip for both); a refused claim
        raises Rejected as a claim alone would. Should the call fail as a whole, the finishes go on their own."""
        finishes = self.finishes
        taken = finishes.take() if finishes is not None else []
        if finishes is None or not taken:
            return self._retry(lambda: self.api.claim(execution_id, attempt), "claim")
        finished = [Finished(execution_id=pending.execution_id, finish=pending.report) for pending in taken]
        try:
            answer = self._retry(lambda: self.api.claim_after(finished, execution_id, attempt), "claim")
        except (requests.RequestException, Rejected):
            finishes.give_back(taken)
            raise
        finishes.settle(taken, answer.finished)
        if answer.claim is None:
            refused = answer.refused or Refusal(status=409, code="", message="no claim in the answer")
            raise Rejected(refused.status, {"error": {"code": refused.code, "message": refused.message}})
        return answer.claim

    def _start(self, claimed: ClaimReply) -> None:
        execution_id = claimed.spec.execution_id
        try:
            prepare_attempt(Path(claimed.spec.output_path), self.settings.home, self.work_user)
        except OSError as exc:  # the work process says what it cannot write, and fails the attempt
            log.error("instance %s: cannot hand %s to the work user: %s", self.instance_id, claimed.spec.output_path, exc)
        spare = self._process_for(claimed.spec, claimed.project)
        run = Running.hand(spare, claimed.spec, claimed.timeout_s, claimed.drain_time_s, oom_kill_count(), self.settings.usage_interval_s,
                           project=claimed.project)
        self.running[execution_id] = run
        self._measure(run, time.monotonic(), alone=True)  # the first sample: the baseline of its CPU time
        log.info("instance %s: %s started in work process %s", self.instance_id, run.label, spare.process.pid,
                 extra=logs.attempt_fields(run.execution_id, run.attempt))
        self._keep_spare()

    def _process_for(self, spec: WorkSpec, project: str) -> Spare:
        """The work process to run ``spec``: for run_as_process false, a warm one that ran the same
        function for the same project (a process keeps what earlier attempts left in its memory, so it
        never serves another project, nor another function); else the spare, or a new process."""
        if spec.warm:
            for warm in [w for w in self.idle if w.serves == (project, spec.function)]:
                self.idle.remove(warm)
                if warm.reusable():
                    return warm
                warm.conn.close()
                if warm.process.is_alive():
                    warm.process.kill()  # it spoke after its Done: no attempt of ours is to read that
        spare = self.spare if self.spare is not None and self.spare.process.is_alive() else self._spawn()
        self.spare = None
        return spare

    def _release(self, run: Running) -> None:
        """After its attempt ends: keep ``run``'s warm process for the next attempt of its project and
        function, or, when it was stopped, timed out, crashed or spoke out of turn, end it. A process
        that sent its last word and has not exited yet is given LEAVE_GRACE_S to exit."""
        if run.warm and run.done and run.stop_reason is None and run.process.is_alive():
            self.idle.append(run.idle())
            while len(self.idle) > (self.concurrency or 1) + 1:  # the oldest goes: each one holds its memory
                self.idle.pop(0).close()
            return
        run.conn.close()
        if run.process.is_alive() and not run.warm and run.stop_reason is None and (run.result or run.error):
            self.leaving.append((run.process, time.monotonic() + LEAVE_GRACE_S))
        elif run.process.is_alive():
            run.process.kill()

    def _reap_leaving(self, now: float) -> None:
        """Join the work processes that exited after their last word; kill those that did not in time."""
        for entry in list(self.leaving):
            process, kill_after = entry
            if not process.is_alive():
                process.join(timeout=0)
                self.leaving.remove(entry)
            elif now >= kill_after:
                log.warning("instance %s: work process %s still runs %.0f s after its result; killing it", self.instance_id,
                            process.pid, LEAVE_GRACE_S)
                process.kill()

    def _measure(self, run: Running, now: float, alone: bool = False) -> None:
        """Sample what ``run``'s work process and its children use now, as metric samples of the ``system`` figure."""
        if run.usage is None:
            return
        if self.gpus is None:
            self.gpus = Gpus()
        try:
            events = run.usage.sample(self.gpus, now, alone=alone)
        except Exception as exc:  # noqa: BLE001 - a measure that fails must not stop the instance, nor the attempt
            log.warning("instance %s: cannot measure %s (%s); its usage is not sampled", self.instance_id, run.label, exc)
            run.usage = None
            return
        at = time.time()
        self.outbox += [ReportedEvent(execution_id=run.execution_id, attempt=run.attempt, at=at, event=event) for event in events]

    def _spawn(self) -> Spare:
        return Spare.start(self.mp, self.architecture, self.settings.adapters, name=f"work-{self.service}", user=self.work_user)

    def _tell_work_user(self) -> None:
        """Choose and log who work processes run as: the work user, unless it cannot read what they need
        (then the instance's own user, or with work_isolation=required a ConfigError: the instance does not start)."""
        if self.work_user is not None:
            blocked = unreadable_by(self.work_user, self.settings.dataset_roots)
            if not blocked:
                log.info("instance: work processes run as the work user %s", self.work_user.label)
                return
            problem = f"the work user {self.work_user.label} cannot read {'; '.join(blocked)}"
            if self.settings.work_isolation == "required":
                raise ConfigError(f"{problem}: make those readable by it, or set TRAINFAAS_WORK_USER=root to run without isolation",
                                  {"TRAINFAAS_WORK_ISOLATION": "required, and the work user cannot read what work processes need"})
            log.warning("instance: %s; work processes run as uid %s instead, and adapter code can read what the instance can."
                        " Make those readable by the work user to isolate them, or set TRAINFAAS_WORK_ISOLATION=required to"
                        " refuse to run without it (docs/security.md#work-processes)", problem, os.geteuid())
            self.work_user = None
            return
        why = "this instance is not root" if os.geteuid() != 0 else f"TRAINFAAS_WORK_USER is {self.settings.work_user!r}"
        log.warning("instance: work processes run as uid %s, like the instance (%s): adapter code can read what the"
                    " instance can (docs/security.md#work-processes)", os.geteuid(), why)

    def _keep_spare(self) -> None:
        """Keep one work process started and waiting, so that the next execution does not wait for
        a process to start and import its adapter. Each process still runs one attempt only.

        While every slot runs a training, the spare waits until one ends: importing a deep learning
        library costs seconds of CPU that the training would lose, and no execution can start
        before a slot frees anyway. Short executions keep their spare ready at all times."""
        if self.spare is not None or self.draining or not self.prestart:
            return
        if self.full and any(run.function == TRAIN_MODEL for run in self.running.values()):
            return
        self.spare = self._spawn()

    def _drop_spare(self) -> None:
        if self.spare is not None:
            self.spare.close()
            self.spare = None

    def _watch(self, timeout_s: float) -> None:
        """Collect events from work processes and handle the ones that ended."""
        if not self.running:
            return
        # Readiness is re-checked per process below; this only waits for the first sign of life.
        wait([run.conn for run in self.running.values()] + [run.process.sentinel for run in self.running.values()], timeout=timeout_s)
        for run in list(self.running.values()):
            self.outbox += run.receive()
            if run.done:  # a warm process ended the attempt: it lives on
                self._finish(run, 0 if run.error is None else 1)
            elif run.function != TRAIN_MODEL and not run.warm and run.stop_reason is None and (run.result or run.error):
                # Its last word decides the outcome whatever its exit: the next attempt need not wait for the
                # exit of a short function's process. A training's exit frees its GPU memory: that one is awaited.
                self._finish(run, None)
            elif not run.process.is_alive():
                run.process.join()
                self.outbox += run.receive()
                self._finish(run, run.process.exitcode)

    def _enforce_deadlines(self, now: float) -> None:
        for run in list(self.running.values()):
            if run.stop_reason is None and now >= run.deadline:
                elapsed = now - run.started
                self._stop(run, f"timeout: attempt ran {elapsed:.0f} s, over its timeout", grace_s=STOP_GRACE_S)
            # Each attempt gets its own drain time, counted from when draining began (or from its
            # start, for one claimed while the drain signal arrived).
            drain_deadline = max(self.drain_started or now, run.started) + run.drain_time_s
            if run.stop_reason is None and self.draining and (self.stop_now or now >= drain_deadline):
                why = "instance stopped" if self.stop_now else f"drain time exceeded ({run.drain_time_s:.0f} s) while the instance was stopping"
                self._stop(run, why, grace_s=STOP_GRACE_S)
            if run.kill_at is not None and now >= run.kill_at and run.process.is_alive():
                run.process.kill()
                run.kill_at = None

    def _stop(self, run: Running, reason: str, grace_s: float) -> None:
        """Ask the work process to stop (should_stop() turns true), and kill it after ``grace_s``."""
        run.stop_reason = reason
        run.stop_event.set()
        run.kill_at = time.monotonic() + grace_s
        log.info("instance %s: stopping %s: %s", self.instance_id, run.label, reason, extra=logs.attempt_fields(run.execution_id, run.attempt))

    def _finish(self, run: Running, exitcode: int | None) -> None:
        del self.running[run.execution_id]
        self._release(run)
        if run.stop_reason == ABANDONED:
            return  # another attempt owns this execution now; nothing of ours is accepted
        outcome, reason = describe_exit(run, exitcode)
        report = Finish(attempt=run.attempt, outcome=outcome, reason=reason,
                        error=f"{run.error.error}: {run.error.message}" if run.error is not None else None,
                        traceback=run.error.traceback if run.error is not None else None,
                        output=run.result.output if run.result is not None else None,
                        usage=run.usage.summary() if run.usage is not None else None, events=self._last_events(run))
        log.info("instance %s: %s ended: %s (%s)", self.instance_id, run.label, outcome, reason, extra=logs.attempt_fields(run.execution_id, run.attempt))
        if self.finishes is not None:
            self.finishes.send(run.execution_id, report, run.label)

    # -- reporting ------------------------------------------------------------------------------

    def _last_events(self, run: Running) -> list[dict[str, Any]]:
        """``run``'s events not reported yet, taken out of the outbox: they go with its finish, in its
        round trip. More than a report takes go ahead in reports of their own."""
        key = (run.execution_id, run.attempt)
        own = [event for event in self.outbox if (event.execution_id, event.attempt) == key]
        if len(own) > REPORT_BATCH:
            self._flush()
            return []
        self.outbox = [event for event in self.outbox if (event.execution_id, event.attempt) != key]
        return [event.model_dump(mode="json") for event in own]

    def _flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.outbox:
            return
        batch, self.outbox = self.outbox[:REPORT_BATCH], self.outbox[REPORT_BATCH:]
        try:
            answer = self.api.report(batch)
        except requests.RequestException as exc:
            if not retryable(exc):
                log.error("instance %s: report cannot be sent (%s); dropping %d events", self.instance_id, exc, len(batch))
                return
            log.warning("instance %s: report failed (%s); keeping %d events", self.instance_id, exc, len(batch))
            self.outbox = (batch + self.outbox)[-OUTBOX_LIMIT:]
            return
        except Rejected as exc:  # sending the same batch again would be refused again
            log.error("instance %s: report of %d events refused (%s); dropped", self.instance_id, len(batch), exc)
            return
        for refused in answer.rejected:
            log.warning("instance %s: event %d of a report refused: %s", self.instance_id, refused.index, refused.why)
        for execution_id, why in answer.refused.items():
            self._abandon(execution_id, why)

    def _beat(self) -> Heartbeat:
        """What the next heartbeat tells: the instance's status and what it runs."""
        status = InstanceStatus.TERMINATING if self.draining else (InstanceStatus.FULL if self.full else InstanceStatus.RUNNING)
        running = [RunningEntry(execution_id=run.execution_id, attempt=run.attempt, pid=run.process.pid) for run in self.running.values()]
        return Heartbeat(status=status, running=running)

    def _answered(self, beat: Heartbeat, answer: HeartbeatReply) -> None:
        """Do what the control plane answered ``beat``. An attempt is abandoned only if it is the
        one the heartbeat told of: an answer may arrive after the next attempt started here."""
        self.paused = answer.paused
        if answer.drain and not self.draining:
            self._on_signal(signal.SIGTERM, None)  # the scheduler chose this instance to go
        for execution_id in answer.stop:
            run = self.running.get(execution_id)
            if run and run.stop_reason is None:
                self._stop(run, USER, grace_s=max(run.drain_time_s, STOP_GRACE_S))
        told = {(entry.execution_id, entry.attempt) for entry in beat.running}
        # An entry the control plane does not know as this instance's is no work of its own either.
        for execution_id in [*answer.abandon, *answer.unknown]:
            run = self.running.get(execution_id)
            if run is not None and (execution_id, run.attempt) in told:
                self._abandon(execution_id, "the control plane no longer assigns it to this instance")

    def _abandon(self, execution_id: str, why: str) -> None:
        run = self.running.get(execution_id)
        if run is None:
            return
        log.warning("instance %s: abandoning %s: %s", self.instance_id, run.label, why, extra=logs.attempt_fields(run.execution_id, run.attempt))
        run.stop_reason = ABANDONED
        run.process.kill()


def read_token(fd: int, limit: int = 64 * 1024) -> str:
    """The token written into the inherited descriptor ``fd`` (a pipe), read to its end; ``fd`` is closed."""
    chunks = []
    try:
        while sum(map(len, chunks)) < limit and (chunk := os.read(fd, limit)):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode().strip()


def main(settings: Settings, service: str, instance_id: str | None, concurrency: int | None, backend: str = "process") -> None:
    InstanceProcess(settings, service, instance_id, concurrency, backend).run()
