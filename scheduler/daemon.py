"""The scheduler: one ``tick()`` runs the fleet keeper, the reaper and the reconciler.

APScheduler only calls ``tick()``; tests call it directly with their own clock. Only the
holder of a Redis lock acts, so a second scheduler started by mistake stays idle.
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import datetime

import redis
from apscheduler.schedulers.background import BackgroundScheduler
from redis.exceptions import LockError
from trainfaas.scheduler.backends.base import InstanceBackend
from trainfaas.scheduler.policy import Decision, History, InstanceState, Observed, ServiceConfig, choose_to_stop, decide
from trainfaas.services.control import attempts, instances, models
from trainfaas.services.control import transitions as states
from trainfaas.services.control.executions import try_enqueue
from trainfaas.services.core.errors import BackendError, TrainfaasError
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import LIVE_INSTANCE, WAITING_EXECUTION, ExecutionStatus, InstanceStatus, Outcome
from trainfaas.services.store import queues
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Attempt, Execution, Instance, Service, ServiceEvent, now_s

log = logging.getLogger("trainfaas.scheduler")

LOCK_KEY = "trainfaas:scheduler"
START_TIMEOUT_S = 60.0
CRASH_WINDOW_S = 300.0
CRASH_UPTIME_S = 60.0


def crashed(instance: Instance) -> bool:
    """Whether a failed instance counts towards a crash loop: it never registered, or it ended by
    itself soon after it started. An instance killed from outside (an operator, a lost machine)
    after it registered is replaced at once, without a backoff."""
    if instance.heartbeat_at is None:
        return True
    killed = (instance.last_exit_reason or "").startswith("killed by")
    return not killed and (instance.ended_at or 0) - instance.started_at < CRASH_UPTIME_S


class Scheduler:
    def __init__(self, settings: Settings, backend: InstanceBackend, connection: redis.Redis | None = None,
                 clock: Callable[[], float] = now_s, extra_backends: list[InstanceBackend] | None = None) -> None:
        self.settings = settings
        self.backend = backend  # the default; a service names its own in Service.backend
        self.backends = {b.name: b for b in [backend, *(extra_backends or [])]}
        self.redis = connection or queues.connect(settings.redis_url)
        self.clock = clock
        self.lock = self.redis.lock(LOCK_KEY, timeout=max(15.0, 3 * settings.tick_interval_s), thread_local=False)
        self.last_reconcile = 0.0
        # Decision history per service. Lost on restart on purpose: a new scheduler starts from
        # the instances it finds, which is what a fresh decision needs.
        self.histories: dict[str, History] = {}
        self.last_evaluated: dict[str, float] = {}
        self.last_recorded: dict[str, tuple[str, int]] = {}
        self.apscheduler: BackgroundScheduler | None = None

    # -- leadership -------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """Hold (or renew) the scheduler lock. Safe to call every tick."""
        try:
            if self.lock.owned():
                self.lock.reacquire()
                return True
            return bool(self.lock.acquire(blocking=False))
        except LockError:
            return bool(self.lock.acquire(blocking=False))
        except redis.RedisError as exc:
            log.warning("scheduler cannot reach Redis (%s); not acting this tick", exc)
            return False

    # -- one tick ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Run one round. Never raises: a failing part is logged and retried next tick."""
        if not self.is_leader():
            return
        database.connect(reuse_if_open=True)
        try:
            for part in (self.reap, self.keep_fleets):
                self._safely(part)
            if self.clock() - self.last_reconcile >= self.settings.reconcile_interval_s:
                self._safely(self.reconcile)
                self.last_reconcile = self.clock()
        finally:
            database.close()

    def _safely(self, part: Callable[[], None]) -> None:
        try:
            part()
        except Exception:  # noqa: BLE001 - the daemon must outlive any one failure
            log.exception("scheduler: %s failed", part.__name__)

    # -- reaper ------------------------------------------------------------------------------

    def reap(self) -> None:
        """Notice dead and silent instances and overdue attempts; reset their executions."""
        now = self.clock()
        for instance in Instance.select().where(Instance.status.in_(LIVE_INSTANCE)):
            seen = instance.heartbeat_at or instance.started_at
            owner = self.backends.get(instance.backend)
            observation = owner.observe(instance) if owner is not None else None
            # (None: the backend cannot tell; the heartbeat decides.)
            if observation is not None and not observation.alive:
                ended = InstanceStatus.FAILED if observation.failed else InstanceStatus.EXITED
                self._instance_gone(instance, ended, observation.exit_reason or "gone")
            elif instance.heartbeat_at is None and now - instance.started_at > START_TIMEOUT_S:
                self._instance_gone(instance, InstanceStatus.FAILED, f"did not register within {START_TIMEOUT_S:.0f} s of starting")
            elif instance.heartbeat_at is not None and now - seen > self.settings.heartbeat_timeout_s:
                self._instance_gone(instance, InstanceStatus.LOST, f"heartbeat lost (last seen {now - seen:.0f} s ago)")
        self._reset_orphans()
        self._reset_overdue(now)

    def _instance_gone(self, instance: Instance, status: InstanceStatus, reason: str) -> None:
        log.warning("instance %s of %s is %s: %s", instance.id, instance.service_id, status, reason)
        if status == InstanceStatus.LOST and instance.backend in self.backends:
            self.backends[instance.backend].kill(instance)  # a silent instance must not keep working on reset attempts
        instances.transition(instance.id, status, ended_at=self.clock(), last_exit_reason=reason, running=[])
        self._reset_attempts_of(instance.id, f"instance {instance.id} {status}: {reason}")

    def _reset_attempts_of(self, instance_id: str, reason: str) -> None:
        open_attempts = Attempt.select().where((Attempt.instance == instance_id) & (Attempt.ended_at.is_null()))
        for attempt in open_attempts:
            self._reset(attempt.execution_id, attempt.number, reason)

    def _reset(self, execution_id: str, attempt: int, reason: str) -> None:
        try:
            execution = attempts.reset(self.redis, execution_id, attempt, reason)
            log.info("execution %s attempt %s reset (%s) -> %s", execution_id, attempt, reason, execution.status)
        except TrainfaasError as exc:
            log.info("execution %s attempt %s not reset: %s", execution_id, attempt, exc.message)
            # The attempt already ended some other way; close its record if it is still open.
            Attempt.update(ended_at=self.clock(), outcome=Outcome.RESET, reason=reason).where(
                (Attempt.execution == execution_id) & (Attempt.number == attempt) & (Attempt.ended_at.is_null())).execute()

    def _reset_orphans(self) -> None:
        """In-progress executions whose current attempt runs on an instance that is no longer live."""
        current = (Attempt.select().join(Execution, on=(
            (Attempt.execution == Execution.id) & (Attempt.number == Execution.attempt)))
            .where((Execution.status == ExecutionStatus.IN_PROGRESS) & Attempt.ended_at.is_null()))
        for attempt in current:
            owner = Instance.get_or_none(Instance.id == attempt.instance)
            if owner is None or owner.status not in LIVE_INSTANCE:
                why = f"instance {attempt.instance} is gone: {owner.last_exit_reason if owner else 'unknown instance'}"
                self._reset(attempt.execution_id, attempt.number, why)

    def _reset_overdue(self, now: float) -> None:
        grace = self.settings.timeout_grace_s
        for execution in Execution.select().where((Execution.status == ExecutionStatus.IN_PROGRESS) & Execution.started_at.is_null(False)):
            if now > execution.started_at + execution.timeout_s + grace:
                self._reset(execution.id, execution.attempt, f"timeout: over {execution.timeout_s:.0f} s (noticed by the scheduler)")

    # -- fleet -------------------------------------------------------------------------------

    def keep_fleets(self) -> None:
        for service in Service.select():
            try:
                self.keep_fleet(service)
            except BackendError as exc:
                # One service's broken backend must not hold up the others; its health shows why.
                log.error("service %s: %s", service.name, exc.message)
                if service.error_reason != exc.message:
                    Service.update(error_reason=exc.message).where(Service.name == service.name).execute()

    def observe(self, service: Service) -> Observed:
        now = self.clock()
        live = list(Instance.select().where((Instance.service == service.name) & (Instance.status.in_(LIVE_INSTANCE))))
        fleet = tuple(InstanceState(i.id, i.status, bool(i.running) or i.status == InstanceStatus.FULL) for i in live)
        queued = Execution.select().where((Execution.service == service.name) & (Execution.status.in_(WAITING_EXECUTION))).count()
        running = Execution.select().where((Execution.service == service.name) & (Execution.status == ExecutionStatus.IN_PROGRESS)).count()
        # A crash loop is over once an instance started after the failures has registered.
        healthy_since = max((i.started_at for i in live if i.heartbeat_at is not None), default=now - CRASH_WINDOW_S)
        since = max(now - CRASH_WINDOW_S, healthy_since)
        failed = [(i.ended_at, i.last_exit_reason or "") for i in Instance.select().where(
            (Instance.service == service.name) & (Instance.status == InstanceStatus.FAILED) & (Instance.ended_at > since)) if crashed(i)]
        backend = self.backends.get(service.backend)
        failed = sorted(failed + (backend.failures(service, since) if backend is not None else []))
        return Observed(queued=queued, running=running, instances=fleet, failures=tuple(at for at, _ in failed),
                        last_failure_reason=failed[-1][1] if failed else "")

    def config(self, service: Service) -> ServiceConfig:
        return ServiceConfig(
            scaling_type=service.scaling_type, min_instances=service.min_instances, max_instances=service.max_instances,
            paused=service.paused, queue_length=service.queue_length, concurrency=service.concurrency,
            cooldown_s=service.cooldown_s, crash_window_s=CRASH_WINDOW_S,
        )

    def keep_fleet(self, service: Service) -> Decision | None:
        """Decide the service's size (every polling interval, or at once when it lost instances)
        and act: start what is missing, stop what is too many (idle first; busy ones drain)."""
        now = self.clock()
        self._retire_other_backends(service)
        observed = self.observe(service)
        history = self.histories.get(service.name, History())
        due = now - self.last_evaluated.get(service.name, -1e18) >= service.polling_interval_s
        short = history.target is not None and len(observed.active) < history.target
        if not (due or short):
            return None
        self.last_evaluated[service.name] = now
        decision = decide(observed, self.config(service), now, history)
        self.histories[service.name] = decision.history
        started, stopped = self._actuate(service, observed, decision)
        self._record(service, observed, decision, started, stopped)
        return decision

    def backend_of(self, service: Service) -> InstanceBackend:
        backend = self.backends.get(service.backend)
        if backend is None:
            raise BackendError(f"service {service.name} wants backend {service.backend!r}; this scheduler runs {sorted(self.backends)}")
        return backend

    def _retire_other_backends(self, service: Service) -> None:
        """After a service moves to another backend, drain its instances on the old one (they
        finish their work first); the decision then starts their replacements on the new one."""
        stale = list(Instance.select().where((Instance.service == service.name) & (Instance.backend != service.backend)
                                             & (Instance.status.in_(LIVE_INSTANCE)) & (Instance.status != InstanceStatus.TERMINATING)))
        for instance in stale:
            log.info("instance %s of %s runs on %s, the service now on %s: draining it", instance.id, service.name, instance.backend, service.backend)
            instances.transition(instance.id, InstanceStatus.TERMINATING)
            old = self.backends.get(instance.backend)
            if old is not None and not old.manages_replicas:
                old.stop(instance)
        for name in {instance.backend for instance in stale}:
            old = self.backends.get(name)
            if old is not None and old.manages_replicas:
                old.set_replicas(service, 0)

    def _actuate(self, service: Service, observed: Observed, decision: Decision) -> tuple[int, int]:
        backend = self.backend_of(service)
        active = observed.active
        started = stopped = 0
        to_stop: list[str] = []
        if len(active) < decision.desired and decision.may_start:
            started = decision.desired - len(active)
            if not backend.manages_replicas:
                for _ in range(started):
                    self.start_instance(service)
        elif len(active) > decision.desired:
            to_stop = choose_to_stop(active, len(active) - decision.desired, forced=decision.forced)
            for instance_id in to_stop:
                log.info("stopping instance %s of %s: %s", instance_id, service.name, decision.reason)
                # The heartbeat answer tells the instance to drain; a local backend also signals it.
                instances.transition(instance_id, InstanceStatus.TERMINATING)
                if not backend.manages_replicas:
                    backend.stop(Instance.get_by_id(instance_id))
            stopped = len(to_stop)
        if backend.manages_replicas and (started or stopped or decision.action == "steady"):
            backend.set_replicas(service, len(active) + started - stopped)
        return started, stopped

    def _record(self, service: Service, observed: Observed, decision: Decision, started: int, stopped: int) -> None:
        error = decision.health_reason if decision.health == "error" else None
        if error != service.error_reason:
            Service.update(error_reason=error).where(Service.name == service.name).execute()
        summary = (decision.action, decision.desired)
        repeated = self.last_recorded.get(service.name) == summary
        self.last_recorded[service.name] = summary
        if not (started or stopped) and (repeated or decision.action == "steady"):
            return  # nothing new to explain
        action = decision.action
        details = f"; started {started}" if started else ""
        details += f"; stopping {stopped}" if stopped else ""
        ServiceEvent.create(service=service, at=self.clock(), queued=observed.queued, running=observed.running,
                            instances=len(observed.active), desired=decision.desired, action=action,
                            reason=(decision.health_reason or decision.reason) + details)

    def start_instance(self, service: Service) -> Instance:
        previous = (Instance.select().where((Instance.service == service.name) & (Instance.status.in_([InstanceStatus.FAILED, InstanceStatus.LOST])))
                    .order_by(Instance.started_at.desc()).first())
        restarts = previous.restart_count + 1 if previous else 0
        backend = self.backend_of(service)
        instance = Instance.create(service=service, backend=backend.name, host=socket.gethostname(), restart_count=restarts,
                                   started_at=self.clock())  # initializing
        try:
            backend.start(service, instance)
        except Exception as exc:  # noqa: BLE001 - any start failure counts towards the crash loop
            reason = exc.message if isinstance(exc, TrainfaasError) else f"{type(exc).__name__}: {exc}"
            instances.transition(instance.id, InstanceStatus.FAILED, last_exit_reason=reason, ended_at=self.clock())
            log.error("instance of %s failed to start: %s", service.name, reason)
        return instance

    # -- reconciler --------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Put back on the queue every execution the DB says is waiting but Redis does not hold."""
        now = self.clock()
        for execution in Execution.select().where((Execution.status == ExecutionStatus.CREATED) & (Execution.created_at < now - 30)):
            try:
                try_enqueue(self.redis, states.queue(execution.id, then=models.follow))
            except TrainfaasError:
                continue
        waiting = list(Execution.select().where(Execution.status.in_(WAITING_EXECUTION)))
        by_service: dict[str, set[str]] = {}
        for execution in waiting:
            if execution.service_id not in by_service:
                by_service[execution.service_id] = queues.queued_job_ids(self.redis, execution.service_id)
            if queues.job_id(execution.id, execution.attempt) not in by_service[execution.service_id]:
                log.info("reconciler: execution %s attempt %s missing from %s; re-enqueued", execution.id, execution.attempt, execution.service_id)
                try_enqueue(self.redis, execution)

    # -- running under APScheduler ------------------------------------------------------------

    def start(self) -> None:
        self.apscheduler = BackgroundScheduler(daemon=True)
        self.apscheduler.add_job(self.tick, "interval", seconds=self.settings.tick_interval_s, max_instances=1, coalesce=True, id="tick",
                                 next_run_time=datetime.now())
        self.apscheduler.start()

    def shutdown(self, drain_timeout_s: float) -> None:
        if self.apscheduler is not None:
            self.apscheduler.shutdown(wait=True)
            self.apscheduler = None
        for backend in self.backends.values():
            backend.close(drain_timeout_s)
        try:
            if self.lock.owned():
                self.lock.release()
        except (LockError, redis.RedisError):
            pass
