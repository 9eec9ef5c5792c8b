"""Redis is the transport: one standard rq queue per service, carrying only execution ids, and a
held list per instance for the jobs it has taken and not yet claimed."""
from __future__ import annotations

import datetime
import logging
import zlib

import redis
from redis.client import Pipeline
from rq import Queue
from rq.job import Job, JobStatus

log = logging.getLogger(__name__)

SERVICE_PREFIX = "mgmt-train-"
JOB_FUNCTION = "trainfaas.functions.run.execute"
# The scheduler's doorbell: the names of services whose work was queued or ended, so that it
# sizes them at once rather than at their next polling interval. Bounded: with no scheduler
# reading it, it keeps only the newest names.
WAKE_KEY = "trainfaas:scheduler:wake"
WAKE_LIMIT = 1000
# An instance moves each job it takes from its queue onto a list of its own (rq's intermediate
# queue), ``HELD_PREFIX + <instance id>``, and removes it once its claim has answered; the ids of
# instances that hold such a list are in the set HELD_KEY. The reconciler reads both: a job held
# by a live instance is not missing from its queue.
HELD_PREFIX = "trainfaas:held:"
HELD_KEY = "trainfaas:held"


def service_name(architecture: str) -> str:
    """The one service (and queue) of an architecture: ``mgmt-train-<architecture>``."""
    return f"{SERVICE_PREFIX}{architecture}"


def connect(url: str) -> redis.Redis:
    """A Redis client for ``url`` (redis://, rediss:// or unix://). Does not connect yet."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def job_id(execution_id: str, attempt: int) -> str:
    return f"{execution_id}-{attempt}"


def parse_job_id(value: str) -> tuple[str, int]:
    execution_id, _, attempt = value.rpartition("-")
    return execution_id, int(attempt)


def get_queue(connection: redis.Redis, service: str) -> Queue:
    return Queue(service, connection=connection)


def enqueue(connection: redis.Redis, service: str, execution_id: str, attempt: int, at_front: bool = False,
            pipeline: Pipeline | None = None) -> None:
    """Put (execution, attempt) on the service's queue. Duplicates are harmless: claims are CAS.
    One round trip; none with ``pipeline``, which the caller executes (see :func:`enqueue_many`)."""
    pipe = pipeline if pipeline is not None else connection.pipeline()
    queue = get_queue(connection, service)
    _push(pipe, queue, [_save(pipe, queue, execution_id, attempt)], at_front)
    ring(pipe, service)
    if pipeline is None:
        pipe.execute()
        log.info("execution %s attempt %s queued on %s", execution_id, attempt, service)


def enqueue_many(connection: redis.Redis, jobs: list[tuple[str, str, int]]) -> None:
    """Put each (service, execution, attempt) of ``jobs`` on its service's queue, in order, in one
    round trip: each job's hash written once, and one push of the ids per service."""
    pipe = connection.pipeline()
    per_service: dict[str, tuple[Queue, list[tuple[str, int]]]] = {}
    for service, execution_id, attempt in jobs:
        if service not in per_service:
            per_service[service] = (get_queue(connection, service), [])
        per_service[service][1].append((execution_id, attempt))
    for service, (queue, ids) in per_service.items():
        _push(pipe, queue, _save_many(pipe, queue, ids))
        ring(pipe, service)
    pipe.execute()
    log.info("%d executions queued (%s)", len(jobs), ", ".join(sorted(per_service)))


def _save(pipe: Pipeline, queue: Queue, execution_id: str, attempt: int) -> str:
    """:func:`_save_many` of one job."""
    return _save_many(pipe, queue, [(execution_id, attempt)])[0]


def _fields(job: Job) -> dict[str, object]:
    """The job's hash: its fields as rq writes them, less the empty ones (rq reads a missing field as an empty one)."""
    return {name: value for name, value in job.to_dict().items() if value != ""}


def _description(execution_id: str, attempt: int) -> str:
    return f"execution {execution_id} attempt {attempt}"


def _save_many(pipe: Pipeline, queue: Queue, jobs: list[tuple[str, int]]) -> list[str]:
    """Write the rq job of each (execution, attempt) of ``jobs``, queued on ``queue``, as one hash each
    (rq's enqueue writes it twice), and return their ids. A job is never run by an rq worker; it names
    a function only so that `rq info` and dashboards show something meaningful. The instance claims
    the execution from the DB. The jobs are created at the same moment: rq makes the first one's hash,
    and each other one is a copy of it with its own description and arguments (its ``data``,
    serialized and compressed as rq does). rq would make every field of every hash anew, which costs
    a batch of 1,000 more than its database writes."""
    first = queue.create_job(JOB_FUNCTION, args=(jobs[0][0],), job_id=job_id(*jobs[0]), result_ttl=0, failure_ttl=3600, ttl=None,
                             description=_description(*jobs[0]), status=JobStatus.QUEUED)
    first.enqueued_at = datetime.datetime.now(datetime.timezone.utc)
    template = _fields(first)
    pipe.hset(first.key, mapping=template)
    ids = [first.id]
    for execution_id, attempt in jobs[1:]:
        data = zlib.compress(queue.serializer.dumps((JOB_FUNCTION, None, (execution_id,), {})))
        ids.append(job_id(execution_id, attempt))
        pipe.hset(Job.key_for(ids[-1]), mapping={**template, "description": _description(execution_id, attempt), "data": data})
    return ids


def _push(pipe: Pipeline, queue: Queue, ids: list[str], at_front: bool = False) -> None:
    """Push the job ids on ``queue``'s list (in their order at its end, or before the rest), as rq does."""
    pipe.sadd(queue.redis_queues_keys, queue.key)
    if at_front:
        pipe.lpush(queue.key, *reversed(ids))
    else:
        pipe.rpush(queue.key, *ids)


def ring(connection: redis.Redis | Pipeline, service: str) -> None:
    """Tell the scheduler that ``service``'s work changed (queued or ended). Executes at once on a
    connection; with a pipeline, when the caller executes it."""
    pipe = connection if isinstance(connection, Pipeline) else connection.pipeline()
    pipe.rpush(WAKE_KEY, service)
    pipe.ltrim(WAKE_KEY, -WAKE_LIMIT, -1)
    if pipe is not connection:
        pipe.execute()


def rung(connection: redis.Redis, timeout_s: float) -> set[str]:
    """The services named on the doorbell, waiting up to ``timeout_s`` for the first; empty when none rang."""
    first = connection.blpop([WAKE_KEY], timeout=timeout_s)
    if not first:
        return set()
    pipe = connection.pipeline()
    pipe.lrange(WAKE_KEY, 0, -1)
    pipe.delete(WAKE_KEY)
    rest = pipe.execute()[0]
    return {first[1].decode(), *(name.decode() for name in rest)}


def held_key(instance_id: str) -> str:
    """The list of the jobs ``instance_id`` has taken from its queue and not yet claimed."""
    return f"{HELD_PREFIX}{instance_id}"


def take(connection: redis.Redis, queue_key: str, instance_id: str, timeout_s: float | None) -> str | None:
    """Move the first job of ``queue_key`` onto ``instance_id``'s held list, waiting up to
    ``timeout_s`` for one (None: no wait); its id, or None. One round trip, which also empties the
    held list first (an instance holds one job at a time: what is left there is a removal that
    failed, whose execution the reconciler then finds missing) and names the instance in HELD_KEY."""
    held = held_key(instance_id)
    pipe = connection.pipeline(transaction=False)  # a blocking move inside MULTI would not wait
    pipe.delete(held)
    pipe.sadd(HELD_KEY, instance_id)
    if timeout_s is None:
        pipe.lmove(queue_key, held, "LEFT", "RIGHT")
    else:
        pipe.blmove(queue_key, held, timeout_s, "LEFT", "RIGHT")
    taken = pipe.execute()[-1]
    return taken.decode() if taken else None


def release(connection: redis.Redis, service: str, instance_id: str, job: str, again: str | None = None) -> None:
    """Drop ``job`` from ``instance_id``'s held list once its claim has answered, in one round trip
    and one transaction with what follows: with ``again`` "front" or "back", the job goes back on its
    queue there; without, its rq job hash is deleted (no rq worker runs it)."""
    pipe = connection.pipeline()
    if again is None:
        pipe.delete(Job.key_for(job))
    else:
        execution_id, attempt = parse_job_id(job)
        enqueue(connection, service, execution_id, attempt, at_front=again == "front", pipeline=pipe)
    pipe.lrem(held_key(instance_id), 1, job)
    pipe.execute()


def snapshot(connection: redis.Redis, services: set[str]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The job ids on each of ``services``' queues, and those on every instance's held list (by
    instance id, for every instance named in HELD_KEY), read in one transaction: a job moving from
    a queue to a held list is seen in one of them. Two round trips."""
    instances = sorted(name.decode() for name in connection.smembers(HELD_KEY))
    ordered = sorted(services)
    pipe = connection.pipeline()
    for service in ordered:
        pipe.lrange(get_queue(connection, service).key, 0, -1)
    for instance_id in instances:
        pipe.lrange(held_key(instance_id), 0, -1)
    lists = [{job.decode() for job in jobs} for jobs in pipe.execute()]
    return dict(zip(ordered, lists[:len(ordered)], strict=True)), dict(zip(instances, lists[len(ordered):], strict=True))


def forget_held(connection: redis.Redis, instance_ids: set[str]) -> None:
    """Delete the held lists of ``instance_ids`` and their names in HELD_KEY (instances that ended)."""
    if not instance_ids:
        return
    pipe = connection.pipeline()
    for instance_id in sorted(instance_ids):
        pipe.delete(held_key(instance_id))
    pipe.srem(HELD_KEY, *instance_ids)
    pipe.execute()


def queue_depth(connection: redis.Redis, service: str) -> int:
    return get_queue(connection, service).count
