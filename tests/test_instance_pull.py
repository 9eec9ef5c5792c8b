"""What an instance does with a job it takes from its service's queue (real Redis, embedded and
server): it moves the job onto a held list of its own, and drops it from there once its claim
has answered or the job went back on the queue."""
from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import requests
from rq.job import Job

from trainfaas.services.store import queues
from trainfaas.services.worker.control_plane import Rejected
from trainfaas.services.worker.instance import InstanceProcess

SERVICE = "mgmt-train-pulltest"
INSTANCE = "pull-test"


class ControlPlane:
    """The control plane's claim only: ``answer`` gives what a claim of (execution, attempt) returns or raises."""

    def __init__(self, answer: Callable[[str, int], Any]) -> None:
        self.answer = answer

    def claim(self, execution_id: str, attempt: int) -> Any:
        return self.answer(execution_id, attempt)


def claimed(execution_id: str, attempt: int) -> Any:
    return SimpleNamespace(spec=SimpleNamespace(execution_id=execution_id, attempt=attempt))


def refused(code: str) -> Callable[[str, int], Any]:
    def answer(_execution_id: str, _attempt: int) -> Any:
        raise Rejected(409, {"error": {"code": code, "message": code}})
    return answer


def pulling_instance(redis_url: str, started: list[tuple[str, int]], answer: Callable[[str, int], Any] = claimed,
                     instance_id: str = INSTANCE, service: str = SERVICE) -> InstanceProcess:
    """An instance's pull, with its queue on ``redis_url`` and a control plane whose claims
    ``answer``; the attempts it would start go to ``started`` (no work process: only the pull is under test)."""
    instance = InstanceProcess.__new__(InstanceProcess)
    instance.redis = queues.connect(redis_url)
    instance.service, instance.instance_id, instance.draining, instance.paused, instance.hold_until = service, instance_id, False, False, 0.0
    instance.queue_key = queues.get_queue(instance.redis, service).key
    instance.api = ControlPlane(answer)  # type: ignore[assignment]
    instance.finishes, instance.running = None, {}
    instance._start = lambda reply: started.append((reply.spec.execution_id, reply.spec.attempt))  # type: ignore[method-assign]
    return instance


def held(instance: InstanceProcess) -> list[bytes]:
    return instance.redis.lrange(queues.held_key(instance.instance_id or ""), 0, -1)


def test_a_job_popped_after_the_stop_signal_goes_back_first_in_line(redis_url: str) -> None:
    started: list[tuple[str, int]] = []
    instance = pulling_instance(redis_url, started)
    queue = queues.get_queue(instance.redis, SERVICE)
    queue.empty()
    for execution_id in ("first", "second"):
        queues.enqueue(instance.redis, SERVICE, execution_id, 1)

    instance.draining = True  # the signal came while the pull waited
    instance._pull(block=True)
    assert started == [] and held(instance) == []
    assert queue.get_job_ids() == [queues.job_id("first", 1), queues.job_id("second", 1)]
    assert Job.exists(queues.job_id("first", 1), connection=instance.redis)

    instance.draining = False  # another instance, not stopping, takes it next
    instance._pull(block=False)
    assert started == [("first", 1)] and queue.get_job_ids() == [queues.job_id("second", 1)]
    assert held(instance) == [] and not Job.exists(queues.job_id("first", 1), connection=instance.redis)
    queue.empty()


def test_the_job_is_held_while_its_claim_waits_and_dropped_once_it_answers(redis_url: str) -> None:
    during: list[list[bytes]] = []

    def slow_claim(execution_id: str, attempt: int) -> Any:
        during.append(held(instance))  # the claim is on its way: the job is on the held list, not the queue
        during.append(instance.redis.lrange(instance.queue_key, 0, -1))
        return claimed(execution_id, attempt)

    started: list[tuple[str, int]] = []
    instance = pulling_instance(redis_url, started, slow_claim)
    queues.enqueue(instance.redis, SERVICE, "one", 2)
    instance._pull(block=True)
    assert during == [[b"one-2"], []]
    assert started == [("one", 2)] and held(instance) == []
    assert instance.redis.sismember(queues.HELD_KEY, INSTANCE)


def test_a_refused_claim_leaves_nothing_held_and_puts_back_only_what_it_asks_for(redis_url: str) -> None:
    started: list[tuple[str, int]] = []
    for code, queued_after in [("stale_attempt", [b"b-1"]), ("service_paused", [b"a-1", b"b-1"]), ("project_running_limit", [b"b-1", b"a-1"]),
                               ("instance_retired", [b"a-1", b"b-1"])]:
        instance = pulling_instance(redis_url, started, refused(code))
        queues.get_queue(instance.redis, SERVICE).empty()
        queues.enqueue(instance.redis, SERVICE, "a", 1)
        queues.enqueue(instance.redis, SERVICE, "b", 1)
        instance._pull(block=False)
        assert held(instance) == [], code
        assert instance.redis.lrange(instance.queue_key, 0, -1) == queued_after, code
        assert instance.draining is (code == "instance_retired"), code  # a retired instance drains: it pulls nothing more
    assert started == []


def test_a_claim_the_api_never_answered_leaves_nothing_held(redis_url: str) -> None:
    def away(_execution_id: str, _attempt: int) -> Any:
        raise requests.HTTPError("400 from a proxy")  # not retried

    instance = pulling_instance(redis_url, [], away)
    queues.enqueue(instance.redis, SERVICE, "gone", 1)
    instance._pull(block=False)
    assert held(instance) == [] and instance.redis.lrange(instance.queue_key, 0, -1) == []


def test_a_pull_empties_what_a_failed_release_left_on_the_held_list(redis_url: str) -> None:
    instance = pulling_instance(redis_url, [])
    instance.redis.rpush(queues.held_key(INSTANCE), "stale-1")
    instance._pull(block=False)  # nothing queued
    assert held(instance) == []
