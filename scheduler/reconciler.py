"""The reconciler: the database is the record, Redis the transport. Every execution the database
says is waiting goes back on its queue when Redis lost it, exactly once (its job id names the
execution and the attempt)."""
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


def reconcile(connection: redis.Redis, now: float) -> None:
    """Put back on the queue every execution the DB says is waiting but Redis does not hold."""
    for execution in Execution.select().where((Execution.status == ExecutionStatus.CREATED) & (Execution.created_at < now - CREATED_GRACE_S)):
        try:
            try_enqueue(connection, states.queue(execution.id, then=models.follow))
        except TrainfaasError:
            continue
    waiting = list(Execution.select().where(Execution.status.in_(WAITING_EXECUTION)))
    by_service: dict[str, set[str]] = {}
    for execution in waiting:
        if execution.service_id not in by_service:
            by_service[execution.service_id] = queues.queued_job_ids(connection, execution.service_id)
        if queues.job_id(execution.id, execution.attempt) not in by_service[execution.service_id]:
            log.info("reconciler: execution %s attempt %s missing from %s; re-enqueued", execution.id, execution.attempt, execution.service_id)
            try_enqueue(connection, execution)
