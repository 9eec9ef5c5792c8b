"""The reconciler: the database is the record, Redis the transport. Every execution the database
says is waiting goes back on its queue when Redis lost it, exactly once (its job id names the
execution and the attempt).

An execution an instance has just popped from its queue is, for a moment, on neither: not in
Redis and not yet claimed in the database. Re-enqueuing it then would leave a duplicate job that
inflates the queue (and the autoscaler's view of it) until an instance pops it and is refused. So
an execution is re-enqueued only when it is still missing, at the same attempt, ``MISSING_GRACE_S``
after the pass that first found it missing.
"""
from __future__ import annotations

import logging

import redis

from trainfaas.services.control import models
from trainfaas.services.control import transitions as states
from trainfaas.services.control.executions import try_enqueue
from trainfaas.services.core.errors import TrainfaasError
from trainfaas.services.core.statuses import WAITING_EXECUTION, ExecutionStatus
from trainfaas.services.store import queues
from trainfaas.services.store.records import Execution

log = logging.getLogger("trainfaas.scheduler")

# A created execution younger than this may still be on its way to the queue.
CREATED_GRACE_S = 30
# How long a waiting execution must be missing from its queue before it is put back: far longer
# than an instance takes from popping a job to claiming its execution.
MISSING_GRACE_S = 3.0


class Reconciler:
    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self.missing_since: dict[tuple[str, int], float] = {}  # (execution, attempt) -> first pass that missed it

    def reconcile(self, now: float) -> int:
        """Put back on the queue every execution the DB says is waiting but Redis has not held
        for MISSING_GRACE_S; returns how many."""
        created = Execution.select().where((Execution.status == ExecutionStatus.CREATED) & (Execution.created_at < now - CREATED_GRACE_S))
        for execution in list(created):
            try:
                try_enqueue(self.connection, states.queue(execution.id, then=models.follow))
            except TrainfaasError:
                continue
        waiting = list(Execution.select().where(Execution.status.in_(WAITING_EXECUTION)))
        by_service: dict[str, set[str]] = {}
        missing: dict[tuple[str, int], float] = {}
        requeued = 0
        for execution in waiting:
            if execution.service_id not in by_service:
                by_service[execution.service_id] = queues.queued_job_ids(self.connection, execution.service_id)
            if queues.job_id(execution.id, execution.attempt) in by_service[execution.service_id]:
                continue
            key = (execution.id, execution.attempt)
            since = missing[key] = self.missing_since.get(key, now)
            if now - since >= MISSING_GRACE_S:
                log.info("reconciler: execution %s attempt %s missing from %s; re-enqueued", execution.id, execution.attempt,
                         execution.service_id)
                try_enqueue(self.connection, execution)
                del missing[key]
                requeued += 1
        self.missing_since = missing  # what was found again, claimed or ended is forgotten
        return requeued
