"""The fleet keeper: sizes each service's fleet with the pure policy (policy.py) and acts on the
answer through the service's backend: starts what is missing, stops what is too many (idle
first; busy ones drain), and records why in the service's events. A service with no instance
and work waiting is sized at once (scale from zero), not at its next polling interval; so is a
service woken because work was queued on it or ended (see trainfaas.scheduler.daemon), and one
whose cooldown or backoff ends.
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from peewee import fn

from trainfaas.scheduler.backends.base import InstanceBackend
from trainfaas.scheduler.policy import Decision, History, InstanceState, Observed, ServiceConfig, choose_to_stop, decide
from trainfaas.services.control import instances, quotas
from trainfaas.services.core.errors import BackendError, ConfigError, TrainfaasError
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import LIVE_INSTANCE, WAITING_EXECUTION, ExecutionStatus, InstanceStatus
from trainfaas.services.store.records import Execution, Instance, Service, ServiceEvent

log = logging.getLogger("trainfaas.scheduler")

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


class FleetKeeper:
    """Runs in the scheduler's one thread; ``backends`` is the scheduler's own (shared) map."""

    def __init__(self, settings: Settings, backends: dict[str, InstanceBackend], clock: Callable[[], float]) -> None:
        self.settings = settings
        self.backends = backends
        self.clock = clock
        # Decision history per service. Lost on restart on purpose: a new scheduler starts from
        # the instances it finds, which is what a fresh decision needs.
        self.histories: dict[str, History] = {}
        self.last_evaluated: dict[str, float] = {}
        self.last_recorded: dict[str, tuple[str, int]] = {}
        self.review_at: dict[str, float | None] = {}
        self.woken: set[str] = set()

    def wake(self, services: set[str]) -> None:
        """Decide the size of ``services`` at their next evaluation, due or not: work was queued
        on them or ended since the last one."""
        self.woken |= services

    def next_review(self) -> float | None:
        """The earliest time at which a decision may change by the clock alone."""
        return min((at for at in self.review_at.values() if at is not None), default=None)

    def reviews_due(self) -> set[str]:
        """The services whose decision may have changed by the clock alone by now."""
        now = self.clock()
        return {name for name, at in self.review_at.items() if at is not None and at <= now}

    def keep_fleets(self, only: set[str] | None = None) -> None:
        """Size every service's fleet (or those named in ``only``); a service whose backend or
        configuration fails is marked with the reason, and the others go on."""
        # Read them all first: a SELECT left open while this loop writes would pin SQLite's read
        # snapshot, and its first write after another process committed fails as locked.
        try:
            chosen = Service.select() if only is None else Service.select().where(Service.name.in_(sorted(only)))
            for service in list(chosen):
                try:
                    self.keep_fleet(service)
                except (BackendError, ConfigError) as exc:
                    # One service's broken backend or unknown instance type must not hold up the
                    # others; its health shows why.
                    log.error("service %s: %s", service.name, exc.message)
                    if service.error_reason != exc.message:
                        Service.update(error_reason=exc.message).where(Service.name == service.name).execute()
        finally:
            # Every service woken or whose review came was evaluated: one still past is of a service
            # gone or failing, and must not make the doorbell thread spin.
            now = self.clock()
            self.review_at = {name: at for name, at in self.review_at.items()
                              if at is not None and (at > now or (only is not None and name not in only))}
            self.woken = set() if only is None else self.woken - only

    def observe(self, service: Service) -> Observed:
        """What the policy needs to know of ``service`` now: its queue, its fleet, its crashes."""
        now = self.clock()
        live = list(Instance.select().where((Instance.service == service.name) & (Instance.status.in_(LIVE_INSTANCE))))
        fleet = tuple(InstanceState(i.id, i.status, bool(i.running) or i.status == InstanceStatus.FULL) for i in live)
        queued = self.startable(service)
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

    def startable(self, service: Service) -> int:
        """The service's waiting executions that may start now: of each project, no more than its
        running quota leaves room for (quotas.py). The others wait for their project, not for an
        instance: they are no reason to start one."""
        waiting = (Execution.select(Execution.project, fn.COUNT(Execution.id).alias("count"))
                   .where((Execution.service == service.name) & (Execution.status.in_(WAITING_EXECUTION)))
                   .group_by(Execution.project))
        total = 0
        for row in waiting:
            limits = quotas.limits_of(self.settings, row.project)
            total += min(row.count, max(0, limits.max_running - limits.running))
        return total

    def config(self, service: Service) -> ServiceConfig:
        """The policy's view of the service's settings."""
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
        # Ticks come every tick_interval_s, give or take a little: a service due within half a
        # tick is due now, or a polling interval equal to the tick would be served every other tick.
        slack = min(self.settings.tick_interval_s, service.polling_interval_s) / 2
        due = now - self.last_evaluated.get(service.name, -1e18) >= service.polling_interval_s - slack
        short = history.target is not None and len(observed.active) < history.target
        cold = observed.queued > 0 and not observed.active  # scale from zero at once, not a polling interval later
        # Woken: work was queued or ended since (see wake()). Reviewed: the last decision said
        # when it would change by the clock alone (the end of a cooldown or of a backoff).
        woken = service.name in self.woken
        review = self.review_at.get(service.name)
        if not (due or short or cold or woken or (review is not None and now >= review)):
            return None
        self.woken.discard(service.name)
        self.last_evaluated[service.name] = now
        decision = decide(observed, self.config(service), now, history)
        self.histories[service.name] = decision.history
        self.review_at[service.name] = decision.review_at
        started, stopped = self._actuate(service, observed, decision)
        self._record(service, observed, decision, started, stopped)
        return decision

    def backend_of(self, service: Service) -> InstanceBackend:
        backend = self.backends.get(service.backend)
        if backend is None:
            raise BackendError(f"service {service.name} wants backend {service.backend!r}; this scheduler runs {sorted(self.backends)}")
        return backend

    def _retire_other_backends(self, service: Service) -> None:
        """After a service moves to another backend or instance type, drain its instances of the old
        one (they finish their work first, and claim nothing more: see attempts.claim); the decision
        then starts their replacements."""
        outdated = (Instance.backend != service.backend) | (Instance.instance_type.is_null(False) & (Instance.instance_type != service.instance_type))
        stale = list(Instance.select().where((Instance.service == service.name) & outdated
                                             & (Instance.status.in_(LIVE_INSTANCE)) & (Instance.status != InstanceStatus.TERMINATING)))
        for instance in stale:
            log.info("instance %s of %s runs on %s (type %s), the service now on %s (type %s): draining it", instance.id, service.name,
                     instance.backend, instance.instance_type, service.backend, service.instance_type)
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
        # The instance registers once with this token; only its hash and expiry are on the row.
        # Expiry is wall-clock time, as the API checks it.
        registration, pending = instances.new_registration(self.settings.registration_ttl_s)
        instance = Instance.create(service=service, backend=backend.name, instance_type=service.instance_type, host=socket.gethostname(),
                                   restart_count=restarts, started_at=self.clock(), **pending)  # initializing
        try:
            backend.start(service, instance, registration)
        except Exception as exc:  # noqa: BLE001 - any start failure counts towards the crash loop
            reason = exc.message if isinstance(exc, TrainfaasError) else f"{type(exc).__name__}: {exc}"
            instances.transition(instance.id, InstanceStatus.FAILED, last_exit_reason=reason, ended_at=self.clock())
            log.error("instance of %s failed to start: %s", service.name, reason)
        return instance
