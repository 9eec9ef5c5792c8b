"""An instance of a service: pulls executions from the service's queue and runs each attempt in
a monitored work process (RQ's work-horse idea; forked from a clean fork server, not from the
instance, so CUDA stays usable).

The instance holds Redis (transport) and its own instance token; it reports everything through
the control plane. Its work processes get neither. It sends heartbeats, enforces timeouts, turns
abnormal exits into readable reasons, and drains on SIGTERM: stop pulling, wait up to the
execution's drain time, then reset what is still running.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import redis
import requests
from rq.job import Job
from trainfaas.services.core.settings import Settings
from trainfaas.services.store import queues

log = logging.getLogger("trainfaas.instance")

# Environment variables that carry credentials. The instance keeps what it needs in memory and
# removes them from its environment so that no work process (adapter code) inherits them.
SECRET_ENV = ("TRAINFAAS_DATABASE_URL", "TRAINFAAS_REDIS_URL", "TRAINFAAS_INSTANCE_TOKEN", "TRAINFAAS_TOKEN",
              "TRAINFAAS_REGISTRATION_TOKEN", "TRAINFAAS_INSTANCE_SECRET")
RESET_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}
STOP_GRACE_S = 1.0


class Rejected(Exception):
    """The control plane refused a call with a 4xx: retrying will not help."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('error', {}).get('message', body)}")
        self.status = status
        self.body = body


class ControlPlane:
    """The instance's calls to the API. Network errors raise requests.RequestException."""

    def __init__(self, api_url: str, timeout_s: float = 10.0, registration: str = "") -> None:
        self.api_url = api_url
        self.http = requests.Session()
        self.registration = registration  # the registration (or admin) token, used once
        self.timeout_s = timeout_s
        self.instance_id = ""

    def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.api_url}/api/v1/instances{path}"
        response = self.http.post(url, json=payload, timeout=self.timeout_s)
        body = response.json() if response.content else {}
        if 400 <= response.status_code < 500:
            raise Rejected(response.status_code, body)
        response.raise_for_status()
        return body  # type: ignore[no-any-return]

    def register(self, service: str, instance_id: str | None, backend: str) -> dict[str, Any]:
        payload = {"service": service, "instance_id": instance_id, "host": socket.gethostname(), "pid": os.getpid(), "backend": backend}
        self.http.headers["Authorization"] = f"Bearer {self.registration}"
        body = self.call("", payload)
        self.instance_id = body["id"]
        self.http.headers["Authorization"] = f"Bearer {body['token']}"
        return body

    def instance_call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.call(f"/{self.instance_id}{path}", payload)


@dataclass
class Spare:
    """A started work process waiting for the spec of the attempt it will run."""

    process: Any
    conn: Connection
    stop_event: Any


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
    result: tuple[Any, ...] | None = None
    error: tuple[Any, ...] | None = None
    stop_reason: str | None = None  # why the instance stopped it: None, "user", or a reset reason
    kill_at: float | None = None
    oom_kills_before: int = 0
    function: str = ""

    @property
    def label(self) -> str:
        return f"execution {self.execution_id} attempt {self.attempt}"


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


def work_process_context() -> Any:
    """Work processes come from a fork server: a clean process started once (spawn-like, so it
    never holds CUDA state or the instance's threads) that forks each work process. Forking from
    it is fast, and each attempt still gets a process of its own. The server imports only the
    function runner; the adapter is imported by the waiting spare."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["trainfaas.functions.run", "trainfaas.functions.train", "trainfaas.functions.noop"])
    return context


def describe_exit(run: Running, exitcode: int | None) -> tuple[str, str]:
    """Turn how a work process ended into (outcome, reason) for the control plane."""
    if run.result is not None:
        if run.stop_reason == "user":
            return "terminated", "stopped by user; the function stopped and returned"
        if run.stop_reason:
            return "reset", run.stop_reason
        return "success", "succeeded"
    if run.stop_reason and run.stop_reason != "user":
        return "reset", run.stop_reason
    if run.error is not None:
        kind, message = run.error[1], run.error[2]
        if kind == "MemoryError":
            return "failed", f"out of memory: {message}"
        return "failed", f"{kind}: {message}"
    if exitcode is not None and exitcode < 0:
        sig = signal.Signals(-exitcode)
        if sig == signal.SIGKILL and oom_kill_count() > run.oom_kills_before:
            return "failed", "OOMKilled: the work process ran out of memory and the kernel killed it (SIGKILL)"
        if run.stop_reason == "user":
            return "terminated", f"stopped by user; the work process was killed ({sig.name})"
        if sig in RESET_SIGNALS:
            return "reset", f"work process killed by {sig.name} (signal {-exitcode})"
        return "failed", f"work process crashed with {sig.name} (signal {-exitcode})"
    if run.stop_reason == "user":
        return "terminated", "stopped by user"
    return "failed", f"work process exited with code {exitcode} without a result"


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
        # Instances the scheduler starts carry their service's registration token; one started by
        # hand registers with the admin token (TRAINFAAS_TOKEN or home/admin-token).
        registration = settings.registration_token or settings.token
        if not registration and settings.admin_token_path.exists():
            registration = settings.admin_token_path.read_text().strip()
        self.api = ControlPlane(settings.api_url, registration=registration)
        self.mp = work_process_context()
        self.running: dict[str, Running] = {}
        self.spare: Spare | None = None
        self.prestart = prestart
        self.architecture = service.removeprefix(queues.SERVICE_PREFIX)
        self.outbox: list[dict[str, Any]] = []
        self.draining = False
        self.paused = False
        self.drain_started: float | None = None
        self.stop_now = False
        self.last_heartbeat = 0.0
        self.last_flush = 0.0

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> None:
        for name in SECRET_ENV:
            os.environ.pop(name, None)
        # Handle SIGTERM from the start: an instance stopped while it registers must still drain.
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        registered = self._retry(lambda: self.api.register(self.service, self.instance_id, self.backend), "register")
        self.instance_id = self.api.instance_id
        self.concurrency = self.concurrency or int(registered["concurrency"])
        log.info("instance %s serving %s (pid %s, concurrency %s)", self.instance_id, self.service, os.getpid(), self.concurrency)
        self._keep_spare()
        try:
            while not (self.draining and not self.running):
                self._step()
        finally:
            self._drop_spare()
            self._flush()
            reason = "drained" if not self.stop_now else "stopped"
            try:
                self.api.instance_call("/deregister", {"reason": reason})
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

    def _retry(self, call: Any, what: str, limit_s: float = 120.0) -> Any:
        deadline = time.monotonic() + limit_s
        delay_s = 0.2
        while True:
            try:
                return call()
            except requests.RequestException as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("instance %s: %s failed (%s); retrying in %.1f s", self.instance_id, what, exc, delay_s)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    # -- the loop -------------------------------------------------------------------------------

    def _step(self) -> None:
        if not self.draining and not self.paused and len(self.running) < (self.concurrency or 1):
            self._pull(block=not self.running)
        elif not self.running:
            time.sleep(0.2)  # nothing to watch and nothing to pull: wait for the next heartbeat
        self._watch(timeout_s=0.2 if self.running else 0.0)
        now = time.monotonic()
        self._enforce_deadlines(now)
        if self.spare is None:
            self._keep_spare()
        if now - self.last_flush >= 0.5:
            self._flush()
        if now - self.last_heartbeat >= self.settings.heartbeat_interval_s:
            self._heartbeat()

    def _pull(self, block: bool) -> None:
        try:
            if block:
                popped = self.redis.blpop([self.queue_key], timeout=1)
                job_id = popped[1].decode() if popped else None
            else:
                raw = self.redis.lpop(self.queue_key)
                job_id = raw.decode() if raw else None
        except redis.RedisError as exc:
            log.warning("instance %s: cannot reach Redis (%s)", self.instance_id, exc)
            time.sleep(1.0)
            return
        if job_id:
            self.redis.delete(Job.key_for(job_id))
            self._start(*queues.parse_job_id(job_id))

    def _start(self, execution_id: str, attempt: int) -> None:
        try:
            claimed = self._retry(lambda: self.api.instance_call("/claim", {"execution_id": execution_id, "attempt": attempt}), "claim")
        except Rejected as exc:
            log.info("instance %s: execution %s attempt %s not claimed: %s", self.instance_id, execution_id, attempt, exc)
            if exc.body.get("error", {}).get("code") == "service_paused":
                self.paused = True
                queues.enqueue(self.redis, self.service, execution_id, attempt, at_front=True)  # it stays first in line
            return
        except requests.RequestException:
            # The API stayed away; the execution is still pending in the DB and the reconciler
            # puts it back on the queue.
            return
        spec = claimed["spec"]
        Path(spec["output_path"]).mkdir(parents=True, exist_ok=True)
        spare = self.spare if self.spare is not None and self.spare.process.is_alive() else self._spawn()
        self.spare = None
        run = Running(execution_id, attempt, spare.process, spare.conn, spare.stop_event,
                      deadline=time.monotonic() + float(claimed["timeout_s"]), drain_time_s=float(claimed["drain_time_s"]),
                      oom_kills_before=oom_kill_count(), function=str(spec.get("function", "")))
        try:
            spare.conn.send(spec)
        except (BrokenPipeError, OSError):
            pass  # the spare died while waiting; the watcher turns its exit into a reason
        self.running[execution_id] = run
        log.info("instance %s: %s started in work process %s", self.instance_id, run.label, spare.process.pid)
        self._keep_spare()

    def _spawn(self) -> Spare:
        """Start a work process that waits for one spec (see trainfaas.functions.run.standby)."""
        from trainfaas.functions.run import standby

        parent_end, child_end = self.mp.Pipe(duplex=True)
        stop_event = self.mp.Event()
        process = self.mp.Process(target=standby, args=(child_end, stop_event, self.architecture, self.settings.adapters),
                                  name=f"work-{self.service}")
        process.start()
        child_end.close()
        return Spare(process, parent_end, stop_event)

    def _keep_spare(self) -> None:
        """Keep one work process started and waiting, so that the next execution does not wait for
        a process to start and import its adapter. Each process still runs one attempt only.

        While every slot runs a training, the spare waits until one ends: importing a deep learning
        library costs seconds of CPU that the training would lose, and no execution can start
        before a slot frees anyway. Short executions keep their spare ready at all times."""
        if self.spare is not None or self.draining or not self.prestart:
            return
        full = len(self.running) >= (self.concurrency or 1)
        if full and any(run.function == "train_model" for run in self.running.values()):
            return
        self.spare = self._spawn()

    def _drop_spare(self) -> None:
        if self.spare is not None:
            self.spare.conn.close()  # the waiting process reads EOF and exits
            self.spare.process.join(timeout=5)
            if self.spare.process.is_alive():
                self.spare.process.kill()
            self.spare = None

    def _watch(self, timeout_s: float) -> None:
        """Collect events from work processes and handle the ones that ended."""
        if not self.running:
            return
        ready = wait([run.conn for run in self.running.values()] + [run.process.sentinel for run in self.running.values()], timeout=timeout_s)
        del ready  # readiness is re-checked per process below
        for run in list(self.running.values()):
            self._drain_pipe(run)
            if not run.process.is_alive():
                run.process.join()
                self._drain_pipe(run)
                self._finish(run, run.process.exitcode)

    def _drain_pipe(self, run: Running) -> None:
        try:
            while run.conn.poll():
                event = run.conn.recv()
                kind = event[0]
                if kind == "result":
                    run.result = event
                elif kind == "error":
                    run.error = event
                else:
                    self.outbox.append({"execution_id": run.execution_id, "attempt": run.attempt, "kind": kind,
                                        "at": time.time(), "data": list(event[1:])})
        except (EOFError, OSError):
            pass

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
        log.info("instance %s: stopping %s: %s", self.instance_id, run.label, reason)

    def _finish(self, run: Running, exitcode: int | None) -> None:
        del self.running[run.execution_id]
        run.conn.close()
        if run.stop_reason == "abandoned":
            return  # another attempt owns this execution now; nothing of ours is accepted
        outcome, reason = describe_exit(run, exitcode)
        payload: dict[str, Any] = {"attempt": run.attempt, "outcome": outcome, "reason": reason}
        if run.error is not None:
            payload.update(error=f"{run.error[1]}: {run.error[2]}", traceback=run.error[3])
        if run.result is not None:
            payload["output"] = run.result[1]
        self._flush()
        log.info("instance %s: %s ended: %s (%s)", self.instance_id, run.label, outcome, reason)
        try:
            self._retry(lambda: self.api.instance_call(f"/executions/{run.execution_id}/finish", payload), "finish")
        except Rejected as exc:
            log.warning("instance %s: result of %s refused: %s", self.instance_id, run.label, exc)
        except requests.RequestException as exc:
            log.error("instance %s: result of %s not delivered (%s); the reaper will reset it", self.instance_id, run.label, exc)

    # -- reporting ------------------------------------------------------------------------------

    def _flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.outbox:
            return
        batch, self.outbox = self.outbox[:5000], self.outbox[5000:]
        try:
            refused = self.api.instance_call("/report", {"events": batch}).get("refused", {})
        except (requests.RequestException, Rejected) as exc:
            log.warning("instance %s: report failed (%s); keeping %d events", self.instance_id, exc, len(batch))
            self.outbox = (batch + self.outbox)[-100000:]
            return
        for execution_id, why in refused.items():
            self._abandon(execution_id, why)

    def _heartbeat(self) -> None:
        self.last_heartbeat = time.monotonic()
        status = "terminating" if self.draining else ("full" if len(self.running) >= (self.concurrency or 1) else "running")
        running = [{"execution_id": run.execution_id, "attempt": run.attempt, "pid": run.process.pid} for run in self.running.values()]
        try:
            answer = self.api.instance_call("/heartbeat", {"status": status, "running": running})
        except (requests.RequestException, Rejected) as exc:
            log.warning("instance %s: heartbeat failed (%s)", self.instance_id, exc)
            return
        self.paused = bool(answer.get("paused", False))
        if answer.get("drain") and not self.draining:
            self._on_signal(signal.SIGTERM, None)  # the scheduler chose this instance to go
        for execution_id in answer.get("stop", []):
            run = self.running.get(execution_id)
            if run and run.stop_reason is None:
                self._stop(run, "user", grace_s=max(run.drain_time_s, STOP_GRACE_S))
        for execution_id in answer.get("abandon", []):
            self._abandon(execution_id, "the control plane no longer assigns it to this instance")

    def _abandon(self, execution_id: str, why: str) -> None:
        run = self.running.get(execution_id)
        if run is None:
            return
        log.warning("instance %s: abandoning %s: %s", self.instance_id, run.label, why)
        run.stop_reason = "abandoned"
        run.process.kill()


def main(settings: Settings, service: str, instance_id: str | None, concurrency: int | None, backend: str = "process") -> None:
    InstanceProcess(settings, service, instance_id, concurrency, backend).run()
