"""What an instance does with a job it pops from its service's queue (real Redis, embedded and server)."""
from __future__ import annotations

from rq.job import Job

from trainfaas.services.store import queues
from trainfaas.services.worker.instance import InstanceProcess

SERVICE = "mgmt-train-pulltest"


def pulling_instance(redis_url: str, started: list[tuple[str, int]]) -> InstanceProcess:
    """An instance's pull, with its queue on ``redis_url``; the attempts it would start go to ``started``
    (no control plane: only the pull is under test)."""
    instance = InstanceProcess.__new__(InstanceProcess)
    instance.redis = queues.connect(redis_url)
    instance.service, instance.instance_id, instance.draining = SERVICE, "pull-test", False
    instance.queue_key = queues.get_queue(instance.redis, SERVICE).key
    instance._start = lambda execution_id, attempt: started.append((execution_id, attempt))  # type: ignore[method-assign]
    return instance


def test_a_job_popped_after_the_stop_signal_goes_back_first_in_line(redis_url: str) -> None:
    started: list[tuple[str, int]] = []
    instance = pulling_instance(redis_url, started)
    queue = queues.get_queue(instance.redis, SERVICE)
    queue.empty()
    for execution_id in ("first", "second"):
        queues.enqueue(instance.redis, SERVICE, execution_id, 1)

    instance.draining = True  # the signal came while the pull waited
    instance._pull(block=True)
    assert started == []
    assert queue.get_job_ids() == [queues.job_id("first", 1), queues.job_id("second", 1)]
    assert Job.exists(queues.job_id("first", 1), connection=instance.redis)

    instance.draining = False  # another instance, not stopping, takes it next
    instance._pull(block=False)
    assert started == [("first", 1)] and queue.get_job_ids() == [queues.job_id("second", 1)]
    queue.empty()
