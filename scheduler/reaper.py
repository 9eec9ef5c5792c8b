"""The reaper: notices dead and silent instances and overdue attempts, and resets their executions.

An instance is gone when its backend sees it exit, when it never registers within
``START_TIMEOUT_S``, or when its heartbeat stops for ``heartbeat_timeout_s``. Its open attempts
are reset (rerun or aborted, by the execution's ``on_reset``); so is an attempt that outlived
its timeout when its instance could not stop it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from trainfaas.scheduler.backends.base import InstanceBackend
from trainfaas.services.control import attempts, instances
from trainfaas.services.core.errors import TrainfaasError
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import LIVE_INSTANCE, ExecutionStatus, InstanceStatus, Outcome
from trainfaas.services.store.records import Attempt, Execution, Instance

log = logging.getLogger("trainfaas.scheduler")

START_TIMEOUT_S = 60.0


class Reaper:
    """Runs in the scheduler's one thread; ``backends`` is the scheduler's own (shared) map."""

    def __init__(self, settings: Settings, backends: dict[str, InstanceBackend], connection: redis.Redis,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.backends = backends
        self.redis = connection
        self.clock = clock

    def reap(self) -> None:
        """Notice dead and silent instances and overdue attempts; reset their executions."""
        now = self.clock()
        for instance in list(Instance.select().where(Instance.status.in_(LIVE_INSTANCE))):  # read first (fleet.py)
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
        overdue = Execution.select().where((Execution.status == ExecutionStatus.IN_PROGRESS) & Execution.started_at.is_null(False))
        for execution in list(overdue):  # read first (fleet.py)
            if now > execution.started_at + execution.timeout_s + grace:
                self._reset(execution.id, execution.attempt, f"timeout: over {execution.timeout_s:.0f} s (noticed by the scheduler)")
