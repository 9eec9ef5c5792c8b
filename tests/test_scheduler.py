"""The scheduler's decisions with a fake clock and the in-memory backend (no processes)."""
from __future__ import annotations

from pathlib import Path

import pytest
import redis

from scheduler.backends.memory import MemoryBackend
from scheduler.daemon import Scheduler
from scheduler.policy import InstanceState, Observed, ServiceConfig, choose_to_stop, desired_instances
from services import states
from services.config import load_settings
from services.models import Execution, Instance, Service


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def scheduler(database_url: str, redis_url: str, short_tmp: Path) -> Scheduler:
    settings = load_settings(home=short_tmp, database_url=database_url, redis_url=redis_url)
    return Scheduler(settings, MemoryBackend(), redis.Redis.from_url(redis_url), clock=Clock())


def running_execution(service: Service, instance: Instance, on_reset: str = "rerun") -> Execution:
    row = Execution.create(service=service, function="noop", timeout_s=100, drain_time_s=5, on_reset=on_reset, max_attempts=3)
    states.queue(row.id)
    return states.claim(row.id, 1, instance.id)


@pytest.mark.parametrize(
    ("config", "desired"),
    [
        (ServiceConfig("fixed", 1, 1), 1),
        (ServiceConfig("fixed", 3, 5), 3),
        (ServiceConfig("fixed", 4, 2), 2),
        (ServiceConfig("fixed", 2, 2, paused=True), 0),
        (ServiceConfig("fixed", 0, 1), 0),
    ],
)
def test_the_fixed_policy_keeps_min_instances_within_max_and_none_when_paused(config: ServiceConfig, desired: int) -> None:
    assert desired_instances(Observed(queued=5, running=0, instances=()), config, now=0.0) == desired


def test_idle_instances_are_chosen_to_stop_before_busy_ones() -> None:
    fleet = (InstanceState("busy", "full", True), InstanceState("idle", "running", False), InstanceState("new", "initializing", False))
    assert choose_to_stop(fleet, 2) == ["new", "idle"]
    assert choose_to_stop(fleet, 3)[-1] == "busy"


def test_the_fleet_keeper_starts_missing_instances_and_replaces_dead_ones(scheduler: Scheduler) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", min_instances=2, max_instances=2)
    scheduler.keep_fleet(service)
    backend: MemoryBackend = scheduler.backend  # type: ignore[assignment]
    assert len(backend.started) == 2

    dead = Instance.get_by_id(backend.started[0])
    backend.dead[dead.id] = "killed by SIGKILL (signal 9)"
    scheduler.reap()
    scheduler.keep_fleet(service)

    assert Instance.get_by_id(dead.id).status == "failed"
    assert Instance.get_by_id(dead.id).last_exit_reason == "killed by SIGKILL (signal 9)"
    assert len(backend.started) == 3 and Instance.get_by_id(backend.started[2]).restart_count == 1


def test_a_lost_heartbeat_resets_the_instances_execution_within_the_heartbeat_timeout(scheduler: Scheduler) -> None:
    clock: Clock = scheduler.clock  # type: ignore[assignment]
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", min_instances=0)
    instance = Instance.create(service=service, backend="memory", status="running", heartbeat_at=clock.now, started_at=clock.now)
    execution = running_execution(service, instance)

    clock.now += scheduler.settings.heartbeat_timeout_s - 1
    scheduler.reap()
    assert Execution.get_by_id(execution.id).status == "in-progress"

    clock.now += 2
    scheduler.reap()
    after = Execution.get_by_id(execution.id)
    assert (after.status, after.attempt) == ("rerun", 2)
    assert Instance.get_by_id(instance.id).status == "lost"
    assert instance.id in scheduler.backend.killed  # type: ignore[attr-defined]
    assert scheduler.redis.lrange("rq:queue:mgmt-train-sleep", 0, -1) == [f"{execution.id}-2".encode()]


def test_an_overdue_execution_is_reset_by_the_scheduler_when_its_instance_cannot(scheduler: Scheduler) -> None:
    clock: Clock = scheduler.clock  # type: ignore[assignment]
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", min_instances=0)
    instance = Instance.create(service=service, backend="memory", status="running", heartbeat_at=clock.now, started_at=clock.now)
    execution = running_execution(service, instance, on_reset="fail")
    Execution.update(started_at=clock.now).where(Execution.id == execution.id).execute()

    clock.now += 100 + scheduler.settings.timeout_grace_s + 1
    Instance.update(heartbeat_at=clock.now).where(Instance.id == instance.id).execute()
    scheduler.reap()

    after = Execution.get_by_id(execution.id)
    assert after.status == "aborted" and "timeout" in after.error


def test_the_reconciler_requeues_what_redis_forgot_exactly_once(scheduler: Scheduler) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep")
    rows = [states.queue(Execution.create(service=service, function="noop", timeout_s=9, drain_time_s=1, on_reset="rerun").id) for _ in range(3)]
    scheduler.reconcile()
    scheduler.reconcile()
    queued = scheduler.redis.lrange("rq:queue:mgmt-train-sleep", 0, -1)
    assert sorted(queued) == sorted(f"{row.id}-1".encode() for row in rows)


def test_only_one_of_two_schedulers_acts(scheduler: Scheduler) -> None:
    other = Scheduler(scheduler.settings, MemoryBackend(), scheduler.redis, clock=scheduler.clock)
    assert scheduler.is_leader() is True
    assert other.is_leader() is False
    scheduler.lock.release()
    assert other.is_leader() is True
