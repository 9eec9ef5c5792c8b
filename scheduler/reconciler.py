"""The reconciler: the database is the record, Redis the transport. Every execution the database
says is waiting goes back on its queue when Redis lost it, exactly once (its job id names the
execution and the attempt).

An instance takes a job by moving it from its queue onto a held list of its own
(trainfaas.services.store.queues.take), and drops it from there once its claim has answered. A job
on the held list of a live instance (one whose row has not ended) is not missing, however long the
claim takes: re-enqueuing it would leave a duplicate job that inflates the queue (and the
autoscaler's view of it) until an instance takes it and is refused. The held lists of instances
that ended, or that the database does not know, are deleted; their jobs are missing like any other.

A missing execution is re-enqueued only when it is still missing, at the same attempt,
``MISSING_GRACE_S`` after the pass that first found it missing: a job is, for a moment, in neither
place when a claim refused for a paused service or a project's running limit puts it back, and
when the reconciler reads Redis while an instance takes a job it had not named in HELD_KEY yet.

``decide()`` is the pure decision; ``Reconciler.reconcile()`` reads the database and Redis, and acts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from trainfaas.services.control import models
from trainfaas.services.control import transitions as states
from trainfaas.services.control.executions import try_enqueue
from trainfaas.services.core.errors import TrainfaasError
from trainfaas.services.core.statuses import LIVE_INSTANCE, WAITING_EXECUTION, ExecutionStatus
from trainfaas.services.store import queues
from trainfaas.services.store.records import Execution, Instance

log = logging.getLogger("trainfaas.scheduler")

# A created execution younger than this may still be on its way to the queue.
CREATED_GRACE_S = 30
# How long a waiting execution must be missing from its queue and from every live instance's held
# list before it is put back.
MISSING_GRACE_S = 3.0

Key = tuple[str, int]  # (execution, attempt)


@dataclass(frozen=True)
class Plan:
    requeue: list[Key]  # put back on their queues now, in the order of ``waiting``
    missing_since: dict[Key, float]  # still missing, not yet for the grace: when first missed
    forget: set[str]  # instances whose held lists are deleted (they ended, or are unknown)


def decide(waiting: list[tuple[str, int, str]], queued: dict[str, set[str]], held: dict[str, set[str]], live: set[str],
           missing_since: dict[Key, float], now: float) -> Plan:
    """What to do about the ``waiting`` executions ((execution, attempt, service), per the database)
    given the job ids on each service's queue (``queued``), on each instance's held list (``held``,
    by instance id), the ids of the live instances and when each missing one was first missed."""
    present = set().union(*(jobs for instance_id, jobs in held.items() if instance_id in live))
    requeue: list[Key] = []
    missing: dict[Key, float] = {}
    for execution_id, attempt, service in waiting:
        job = queues.job_id(execution_id, attempt)
        if job in queued.get(service, ()) or job in present:
            continue
        key = (execution_id, attempt)
        since = missing_since.get(key, now)
        if now - since >= MISSING_GRACE_S:
            requeue.append(key)
        else:
            missing[key] = since  # what was found again, claimed or ended is forgotten
    return Plan(requeue, missing, {instance_id for instance_id in held if instance_id not in live})


class Reconciler:
    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self.missing_since: dict[Key, float] = {}  # (execution, attempt) -> first pass that missed it

    def reconcile(self, now: float) -> int:
        """Put back on the queue every execution the DB says is waiting but Redis has not held (on
        its queue or a live instance's held list) for MISSING_GRACE_S; returns how many."""
        created = Execution.select().where((Execution.status == ExecutionStatus.CREATED) & (Execution.created_at < now - CREATED_GRACE_S))
        for execution in list(created):
            try:
                try_enqueue(self.connection, states.queue(execution.id, then=models.follow))
            except TrainfaasError:
                continue
        waiting = {(row.id, row.attempt): row for row in Execution.select().where(Execution.status.in_(WAITING_EXECUTION))}
        queued, held = queues.snapshot(self.connection, {row.service_id for row in waiting.values()})
        # Read after Redis: an instance named there registered before, so its row is there.
        live = {row.id for row in Instance.select(Instance.id).where(Instance.status.in_(LIVE_INSTANCE))}
        plan = decide([(row.id, row.attempt, row.service_id) for row in waiting.values()], queued, held, live, self.missing_since, now)
        if plan.forget:
            log.info("reconciler: held lists of ended or unknown instances %s deleted", ", ".join(sorted(plan.forget)))
            queues.forget_held(self.connection, plan.forget)
        for key in plan.requeue:
            execution = waiting[key]
            log.info("reconciler: execution %s attempt %s missing from %s; re-enqueued", execution.id, execution.attempt,
                     execution.service_id)
            try_enqueue(self.connection, execution)
        self.missing_since = plan.missing_since
        return len(plan.requeue)
