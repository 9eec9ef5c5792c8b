"""Scheduler costs that grow linearly: one tick with 10, 100 and 1,000 services.

Each service autoscales (min 0, max 2, polling every tick) and holds two registered, heartbeating
instances, one running execution and two waiting ones (rows in the database; one on its Redis
queue, one on an instance's held list, taken and not yet claimed). A tick is the scheduler's whole
round: the reaper (silent instances, overdue attempts), the fleet keeper (a decision per service)
and the reconciler (the database's waiting executions against the queues and held lists), on the in-memory instance backend so that no process start is timed. The
clock advances past every polling interval between ticks, so every service is decided every tick.

For each size the median of ``--ticks`` ticks is printed, per tick and per service. The figure for
100 and 1,000 services is the time per service against the time per service at 10 (the baseline,
measured in the same run): a cost that grows at most linearly keeps the ratio at or below 1.0.
SQLite in a scratch folder; Redis is the server at TRAINFAAS_TEST_REDIS_URL (database flushed) or,
without it, an embedded redis-server.

    python -m tests.perf.bench_scheduler_costs [--sizes 10,100,1000] [--ticks 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import redis

from tests.perf.common import parse_arguments, report, scratch_dir
from trainfaas.scheduler.backends.memory import MemoryBackend
from trainfaas.scheduler.daemon import Scheduler
from trainfaas.services.control import transitions as states
from trainfaas.services.core.settings import load_settings
from trainfaas.services.local.embedded_redis import EmbeddedRedis
from trainfaas.services.store import queues
from trainfaas.services.store.database import database, open_database
from trainfaas.services.store.migrations import migrate
from trainfaas.services.store.records import Execution, Instance, Service


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def populate(connection: redis.Redis, services: int, now: float) -> None:
    """``services`` services, each with two live instances, one running and two waiting executions
(one queued, one held by an instance)."""
    with database.atomic():
        for n in range(services):
            service = Service.create(name=f"mgmt-train-bench{n:04d}", architecture=f"bench{n:04d}", backend="memory",
                                     scaling_type="autoscale", min_instances=0, max_instances=2, polling_interval_s=1.0,
                                     cooldown_s=3600.0)
            instances = [Instance.create(service=service, backend="memory", status="running", heartbeat_at=now, host="bench")
                         for _ in range(2)]
            for index in range(3):
                row = Execution.create(service=service, function="noop", timeout_s=3600, drain_time_s=5, on_reset="rerun")
                states.queue(row.id)
                if index == 0:
                    states.claim(row.id, 1, instances[0].id)
                else:
                    queues.enqueue(connection, service.name, row.id, 1)
            # One waiting execution is held by an instance whose claim is on its way.
            queues.take(connection, queues.get_queue(connection, service.name).key, instances[1].id, timeout_s=None)


def tick_seconds(size: int, ticks: int, redis_url: str, folder: Path) -> list[float]:
    settings = load_settings(home=folder / f"home{size}", database_url=f"sqlite:///{folder / f'scheduler{size}.db'}",
                             redis_url=redis_url, reconcile_interval_s=0.0)
    open_database(settings.database_url)
    migrate()
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    clock = Clock()
    populate(connection, size, clock.now)
    scheduler = Scheduler(settings, MemoryBackend(), connection, clock=clock)
    times = []
    for _ in range(ticks + 1):  # the first tick warms caches and is left out
        clock.now += 2.0
        Instance.update(heartbeat_at=clock.now).execute()  # every instance stays alive
        started = time.perf_counter()
        scheduler.tick()
        times.append(time.perf_counter() - started)
    scheduler.shutdown(0)
    database.close()
    return times[1:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="numbers of services, comma-separated; the first is the baseline")
    parser.add_argument("--ticks", type=int, default=5, help="ticks timed at each size (after one to warm up)")
    args = parse_arguments(parser, {"sizes": "2,4", "ticks": 1}, argv)
    folder = scratch_dir("tfsched")
    embedded = None
    redis_url = os.environ.get("TRAINFAAS_TEST_REDIS_URL")
    if not redis_url:
        embedded = EmbeddedRedis(folder / "redis.sock")
        redis_url = embedded.start()
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
        per_service = {}
        for size in sizes:
            median = statistics.median(tick_seconds(size, args.ticks, redis_url, folder))
            per_service[size] = median / size
            print(f"{size} services: {1000 * median:.1f} ms a tick, {1000 * per_service[size]:.3f} ms a service"
                  f" (load average {' '.join(f'{v:.2f}' for v in os.getloadavg())})")
        base = sizes[0]
        for size in sizes[1:]:
            report(f"scheduler_tick_{size}_services", "ms_per_service", 1000 * per_service[size], 1000 * per_service[base], 1.0,
                   extra={"services": size, "baseline_services": base})
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
