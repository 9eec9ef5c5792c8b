"""Small helpers for the benchmark scripts that drive a running Stack.

Only the standard library is imported at module level: ``trivial`` is the job that the rq baseline
of bench_throughput runs in a freshly spawned process per job, and it must not pay for importing
the project. The project's entities are imported inside the helpers that need them.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

SERVICE = "mgmt-train-sleep"


def trivial() -> None:
    """The rq baseline's job: does nothing."""
    return None


def live_instances(service: str) -> list[Any]:
    from trainfaas.services.core.statuses import LIVE_INSTANCE
    from trainfaas.services.store.records import Instance

    return list(Instance.select().where((Instance.service == service) & Instance.status.in_(LIVE_INSTANCE)))


def wait_instance_running(service: str, timeout_s: float = 120.0) -> Any:
    """Wait until the service has an instance that has registered and sent a heartbeat."""
    from tests.perf.common import wait_for

    def running() -> Any:
        return next((i for i in live_instances(service) if i.status == "running" and i.heartbeat_at), None)

    return wait_for(running, timeout_s, f"an instance of {service} to run")


def status_at(execution_id: str, status: str, attempt: int | None = None) -> float | None:
    """When the execution's status log first recorded ``status`` (for ``attempt`` if given)."""
    from trainfaas.services.store.records import StatusLog

    query = StatusLog.select().where((StatusLog.execution == execution_id) & (StatusLog.status == status))
    if attempt is not None:
        query = query.where(StatusLog.attempt == attempt)
    row = query.order_by(StatusLog.at).first()
    return None if row is None else float(row.at)


def wait_status(execution_id: str, statuses: tuple[str, ...], timeout_s: float = 120.0, poll_s: float = 0.005) -> str:
    """Poll the database (cheaper than HTTP on a small box) until the execution has one of ``statuses``."""
    from tests.perf.common import wait_for
    from trainfaas.services.core.statuses import TERMINAL_EXECUTION as TERMINAL
    from trainfaas.services.store.records import Execution

    def check() -> str | None:
        status = str(Execution.get_by_id(execution_id).status)
        if status in TERMINAL and status not in statuses:
            raise RuntimeError(f"execution {execution_id} ended {status}, waiting for {statuses}")
        return status if status in statuses else None

    return str(wait_for(check, timeout_s, f"execution {execution_id} to reach {statuses}", poll_s=poll_s))


def warm_up(client: Any, service: str = SERVICE, count: int = 3) -> None:
    """Run ``count`` noop executions one after the other, so the instance and its spare are warm."""
    for _ in range(count):
        wait_status(client.enqueue(service, "noop", {})["id"], ("success",), 120.0, poll_s=0.05)
    time.sleep(1.0)  # let the spare work process started by the last one finish importing


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation."""
    if len(values) == 1 or not 1 <= q <= 99:
        return min(values) if q < 50 else max(values)
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def redis_round_trip_s(redis_url: str, count: int = 200) -> float:
    """Median time of one LPUSH + BLPOP pair on the stack's Redis."""
    from trainfaas.services.store import queues

    connection = queues.connect(redis_url)
    key = "bench:rtt"
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        connection.lpush(key, b"x")
        connection.blpop([key], timeout=1)
        samples.append(time.perf_counter() - started)
    connection.close()
    return statistics.median(samples)
