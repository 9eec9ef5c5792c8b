"""The scheduler's decisions with a fake clock and the in-memory backend (no processes)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from rq.job import Job

from tests.test_instance_pull import claimed, pulling_instance
from trainfaas.scheduler import backends
from trainfaas.scheduler.backends import InstanceBackend
from trainfaas.scheduler.backends.environment import instance_environment
from trainfaas.scheduler.backends.memory import MemoryBackend
from trainfaas.scheduler.backends.process import ProcessBackend
from trainfaas.scheduler.backends.swarm import SwarmBackend
from trainfaas.scheduler.daemon import Scheduler
from trainfaas.scheduler.policy import History, InstanceState, Observed, ServiceConfig, choose_to_stop, decide, desired_instances
from trainfaas.scheduler.reconciler import MISSING_GRACE_S
from trainfaas.services.control import tokens as auth
from trainfaas.services.control import transitions as states
from trainfaas.services.control.executions import try_enqueue_many
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.settings import load_settings
from trainfaas.services.store import queues
from trainfaas.services.store.records import Execution, Instance, Service


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


def fleet(*busy: bool) -> tuple[InstanceState, ...]:
    return tuple(InstanceState(f"i{n}", "full" if is_busy else "running", is_busy) for n, is_busy in enumerate(busy))


AUTO = ServiceConfig("autoscale", min_instances=0, max_instances=3, cooldown_s=60)


@pytest.mark.parametrize(
    ("case", "observed", "config", "now", "history", "desired", "action"),
    [
        ("fixed keeps min_instances", Observed(5, 0, ()), ServiceConfig("fixed", 2, 4), 0, History(), 2, "scale-up"),
        ("fixed is clamped to max", Observed(0, 0, ()), ServiceConfig("fixed", 4, 2), 0, History(), 2, "scale-up"),
        ("paused wants none", Observed(3, 1, fleet(True)), ServiceConfig("fixed", 2, 2, paused=True), 0, History(1), 0, "pause"),
        ("a queue over capacity grows at once", Observed(2, 0, ()), AUTO, 0, History(0), 2, "scale-up"),
        ("growth stops at max", Observed(9, 0, ()), AUTO, 0, History(0), 3, "scale-up"),
        ("never below min", Observed(0, 0, ()), ServiceConfig("autoscale", 1, 3), 0, History(0), 1, "scale-up"),
        ("queue_length and concurrency widen an instance", Observed(5, 1, ()),
         ServiceConfig("autoscale", 0, 9, queue_length=2, concurrency=1), 0, History(0), 3, "scale-up"),
        ("an empty queue holds during the cooldown", Observed(0, 0, fleet(False, False)), AUTO, 30, History(2, 0, 0), 2, "hold"),
        ("an empty queue scales to zero after the cooldown", Observed(0, 0, fleet(False, False)), AUTO, 61, History(2, 0, 0), 0, "scale-down"),
        ("a fresh change is held for the cooldown too", Observed(0, 0, fleet(False)), AUTO, 70, History(1, 50, 0), 1, "hold"),
        ("a lowered max shrinks at once", Observed(4, 3, fleet(True, True, True)),
         ServiceConfig("autoscale", 0, 1, cooldown_s=60), 5, History(3, 0), 1, "scale-down"),
    ],
)
def test_the_policy_table(case: str, observed: Observed, config: ServiceConfig, now: float, history: History,
                          desired: int, action: str) -> None:
    decision = decide(observed, config, now, history)
    assert (decision.desired, decision.action) == (desired, action), (case, decision)


def test_no_flapping_a_brief_dip_in_demand_does_not_shrink_the_service() -> None:
    busy = decide(Observed(3, 0, ()), AUTO, 0, History(0))
    dip = decide(Observed(0, 1, fleet(True, False, False)), AUTO, 10, busy.history)
    back = decide(Observed(2, 1, fleet(True, False, False)), AUTO, 20, dip.history)
    later = decide(Observed(0, 0, fleet(False, False, False)), AUTO, 50, back.history)
    assert [d.desired for d in (busy, dip, back, later)] == [3, 3, 3, 3]
    assert decide(Observed(0, 0, fleet(False, False, False)), AUTO, 111, later.history).desired == 0


def test_busy_instances_are_never_chosen_for_scale_in_unless_forced_and_then_last() -> None:
    instances = (InstanceState("busy", "full", True), InstanceState("idle", "running", False), InstanceState("new", "initializing", False))
    assert choose_to_stop(instances, 2) == ["new", "idle"]
    assert choose_to_stop(instances, 3) == ["new", "idle"]
    assert choose_to_stop(instances, 3, forced=True) == ["new", "idle", "busy"]
    assert decide(Observed(0, 1, fleet(True, True)), ServiceConfig("autoscale", 0, 1), 0, History(2)).forced is True


def test_a_crash_loop_backs_off_exponentially_and_marks_the_service_error() -> None:
    config = ServiceConfig("autoscale", 0, 2, crash_limit=3, crash_window_s=300, backoff_base_s=10, backoff_max_s=100)
    three = Observed(4, 0, (), failures=(0.0, 1.0, 2.0), last_failure_reason="exit code 3")
    decision = decide(three, config, 5.0, History(0))
    assert (decision.may_start, decision.health, decision.action) == (False, "error", "backoff")
    assert "exit code 3" in decision.health_reason
    assert decide(three, config, 12.0, History(0)).may_start is True  # 2 + 10 s
    five = Observed(4, 0, (), failures=(0.0, 1.0, 2.0, 3.0, 4.0))
    assert decide(five, config, 40.0, History(0)).may_start is False  # 4 + 40 s
    assert decide(five, config, 44.0, History(0)).may_start is True
    assert decide(Observed(4, 0, (), failures=(0.0, 1.0, 2.0)), config, 400.0, History(0)).health == "ok"  # outside the window


def test_desired_instances_is_the_number_of_the_decision() -> None:
    assert desired_instances(Observed(5, 0, ()), ServiceConfig("fixed", 2, 2), now=0.0) == 2


def test_a_hold_says_when_its_cooldown_ends_and_a_backoff_when_starts_resume() -> None:
    idle = Observed(0, 0, fleet(False, False))
    assert decide(idle, AUTO, 30, History(2, 0, 0)).review_at == 60  # low since 0, cooldown 60
    assert decide(Observed(0, 0, fleet(False)), AUTO, 70, History(1, 50, 0)).review_at == 110  # changed at 50
    assert decide(Observed(3, 0, ()), AUTO, 0, History(0)).review_at is None  # a scale-up waits for nothing
    assert decide(idle, AUTO, 61, History(2, 0, 0)).review_at is None
    crashes = ServiceConfig("autoscale", 0, 2, crash_limit=3, backoff_base_s=10)
    assert decide(Observed(4, 0, (), failures=(0.0, 1.0, 2.0)), crashes, 5.0, History(0)).review_at == 12.0


def waiting(service: Service, count: int) -> list[Execution]:
    rows = [Execution.create(service=service, function="noop", timeout_s=100, drain_time_s=5, on_reset="rerun") for _ in range(count)]
    for row in rows:
        states.queue(row.id)
    return rows


def test_a_woken_service_is_sized_at_once_and_a_quiet_one_at_its_polling_interval(scheduler: Scheduler) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", scaling_type="autoscale", min_instances=1, max_instances=3, backend="memory",
                             polling_interval_s=60)
    scheduler.keep_fleet(service)
    waiting(service, 3)
    scheduler.clock.now += 1  # type: ignore[attr-defined]
    assert scheduler.keep_fleet(service) is None  # not due for 59 s more

    scheduler.fleet.wake({service.name})
    decision = scheduler.keep_fleet(service)

    assert decision is not None and (decision.action, decision.desired) == ("scale-up", 3)
    assert len(scheduler.backend.started) == 3  # type: ignore[attr-defined]
    assert scheduler.keep_fleet(service) is None  # the wake is used up


def test_jobs_queued_in_one_batch_read_back_in_rq_as_the_jobs_queued_one_by_one(redis_url: str) -> None:
    connection = redis.Redis.from_url(redis_url)
    queues.enqueue(connection, "mgmt-train-alone", "a" * 32, 1)
    queues.enqueue_many(connection, [("mgmt-train-many", f"{n:032x}", 2) for n in range(3)])

    alone = Job.fetch(queues.job_id("a" * 32, 1), connection=connection)
    batch = Job.fetch_many([queues.job_id(f"{n:032x}", 2) for n in range(3)], connection=connection)
    assert [job.id for job in queues.get_queue(connection, "mgmt-train-many").get_jobs()] == [f"{n:032x}-2" for n in range(3)]
    for n, job in enumerate(batch):
        assert job is not None
        assert (job.func_name, job.args, job.kwargs) == (alone.func_name, (f"{n:032x}",), {})
        assert job.description == f"execution {n:032x} attempt 2"
        assert (job.origin, job.get_status(), job.timeout, job.result_ttl, job.failure_ttl) == (
            "mgmt-train-many", alone.get_status(), alone.timeout, alone.result_ttl, alone.failure_ttl)
        assert job.enqueued_at is not None and job.created_at is not None


def test_the_doorbell_rings_on_enqueue_and_the_leader_sizes_that_service_without_a_tick(scheduler: Scheduler) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", scaling_type="autoscale", min_instances=0, max_instances=4, backend="memory",
                             polling_interval_s=60)
    quiet = Service.create(name="mgmt-train-quiet", architecture="quiet", min_instances=1, backend="memory")
    assert scheduler.is_leader() is True
    rows = [Execution.create(service=service, function="noop", timeout_s=100, drain_time_s=5, on_reset="rerun") for _ in range(5)]
    for row in rows:
        states.queue(row.id)

    assert try_enqueue_many(scheduler.redis, rows) is True
    assert scheduler.answer_doorbell(timeout_s=5.0) is True

    started = [Instance.get_by_id(i).service_id for i in scheduler.backend.started]  # type: ignore[attr-defined]
    assert started == [service.name] * 4  # all of max_instances in one decision; the quiet service waits for a tick
    scheduler.tick()
    assert Instance.select().where(Instance.service == quiet.name).count() == 1
    assert queues.rung(scheduler.redis, timeout_s=0.01) == set()  # the bell was emptied


def test_a_service_holding_for_its_cooldown_shrinks_when_the_cooldown_ends_not_a_polling_interval_later(scheduler: Scheduler) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", scaling_type="autoscale", min_instances=0, max_instances=2, backend="memory",
                             polling_interval_s=60, cooldown_s=10)
    rows = waiting(service, 2)
    scheduler.keep_fleet(service)
    Execution.delete().where(Execution.id.in_([row.id for row in rows])).execute()
    scheduler.clock.now += 1  # type: ignore[attr-defined]
    scheduler.fleet.wake({service.name})
    assert scheduler.keep_fleet(service).action == "hold"  # type: ignore[union-attr]
    assert scheduler.fleet.next_review() == scheduler.clock() + 10

    scheduler.clock.now += 9.5  # type: ignore[attr-defined]
    assert scheduler.keep_fleet(service) is None
    scheduler.clock.now += 0.5  # type: ignore[attr-defined]
    decision = scheduler.keep_fleet(service)

    assert decision is not None and (decision.action, decision.desired) == ("scale-down", 0)
    assert len(scheduler.backend.stopped) == 2  # type: ignore[attr-defined]


def test_a_polling_interval_equal_to_the_tick_is_served_every_tick_despite_jitter(scheduler: Scheduler) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", min_instances=1, backend="memory", polling_interval_s=1)
    scheduler.keep_fleet(service)
    scheduler.clock.now += 0.4  # type: ignore[attr-defined]
    assert scheduler.keep_fleet(service) is None
    scheduler.clock.now += 0.55  # type: ignore[attr-defined]  # 0.95 s: a tick that came a little early
    assert scheduler.keep_fleet(service) is not None


def test_the_fleet_keeper_starts_missing_instances_and_replaces_dead_ones(scheduler: Scheduler) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", min_instances=2, max_instances=2, backend="memory")
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


def test_instances_of_an_instance_type_the_service_no_longer_has_drain_and_others_replace_them(scheduler: Scheduler) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", min_instances=1, max_instances=1, backend="memory")
    scheduler.keep_fleet(service)
    backend: MemoryBackend = scheduler.backend  # type: ignore[assignment]
    old = Instance.get_by_id(backend.started[0])
    assert old.instance_type == "default"

    Service.update(instance_type="regular-xs").where(Service.name == service.name).execute()
    scheduler.clock.now += service.polling_interval_s  # type: ignore[attr-defined]
    scheduler.keep_fleet(Service.get_by_id(service.name))

    assert Instance.get_by_id(old.id).status == "terminating" and backend.stopped == [old.id]
    assert [Instance.get_by_id(i).instance_type for i in backend.started[1:]] == ["regular-xs"]


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
    assert scheduler.redis.lrange("rq:queue:mgmt-train-sleep", 0, -1) == []  # maybe popped, about to be claimed
    scheduler.clock.now += MISSING_GRACE_S  # type: ignore[attr-defined]
    scheduler.reconcile()
    scheduler.reconcile()
    queued = scheduler.redis.lrange("rq:queue:mgmt-train-sleep", 0, -1)
    assert sorted(queued) == sorted(f"{row.id}-1".encode() for row in rows)


def test_the_reconciler_leaves_alone_an_execution_claimed_between_two_passes(scheduler: Scheduler) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep")
    popped = states.queue(Execution.create(service=service, function="noop", timeout_s=9, drain_time_s=1, on_reset="rerun").id)
    scheduler.reconcile()  # popped by an instance: in neither Redis nor, yet, claimed
    Execution.update(status="in-progress").where(Execution.id == popped.id).execute()  # now claimed
    scheduler.clock.now += MISSING_GRACE_S  # type: ignore[attr-defined]
    scheduler.reconcile()
    assert scheduler.redis.lrange("rq:queue:mgmt-train-sleep", 0, -1) == []  # no duplicate job
    assert scheduler.reconciler.missing_since == {}


def test_only_one_of_two_schedulers_acts(scheduler: Scheduler) -> None:
    other = Scheduler(scheduler.settings, MemoryBackend(), scheduler.redis, clock=scheduler.clock)
    assert scheduler.is_leader() is True
    assert other.is_leader() is False
    scheduler.lock.release()
    assert other.is_leader() is True


def test_moving_a_service_to_another_backend_drains_the_old_instances_and_starts_new_ones(scheduler: Scheduler) -> None:
    other = MemoryBackend()
    other.name = "other"
    scheduler.backends["other"] = other
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", backend="memory", polling_interval_s=1)
    scheduler.keep_fleet(service)
    (old_id,) = scheduler.backend.started  # type: ignore[attr-defined]

    Service.update(backend="other").where(Service.name == service.name).execute()
    scheduler.clock.now += 2  # type: ignore[attr-defined]
    scheduler.keep_fleet(Service.get_by_id(service.name))

    assert Instance.get_by_id(old_id).status == "terminating"
    assert scheduler.backend.stopped == [old_id]  # type: ignore[attr-defined]
    assert len(other.started) == 1 and Instance.get_by_id(other.started[0]).backend == "other"


def launch(backend: InstanceBackend, service: Service, instance: Instance) -> None:
    """What the fleet keeper asks of a backend to run one more instance."""
    if backend.manages_replicas:
        backend.set_replicas(service, 1)
    else:
        backend.start(service, instance, "tfr_registration")


@pytest.mark.parametrize("name", ["process", "docker", "swarm", "memory"])
def test_every_backend_refuses_an_unknown_instance_type_naming_the_field_and_the_known_types(scheduler: Scheduler, name: str) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", backend=name, instance_type="huge")
    instance = Instance.create(service=service, backend=name, status="initializing", started_at=0)
    backend = backends.create(name, scheduler.settings)

    with pytest.raises(ConfigError) as refused:
        launch(backend, service, instance)

    assert "'huge'" in refused.value.message
    assert list(refused.value.fields) == ["instance_type"]
    assert all(known in refused.value.fields["instance_type"] for known in scheduler.settings.instance_types)
    assert Instance.get_by_id(instance.id).pid is None  # nothing was started


def test_every_backend_gives_an_instance_the_same_environment_without_the_schedulers_secrets(
        scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINFAAS_DATABASE_URL", "postgresql://scheduler:secret@db/trainfaas")
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", instance_type="regular-xs")

    expected = instance_environment(scheduler.settings, service, "tfr_registration")
    process = ProcessBackend(scheduler.settings).environment(service, "tfr_registration")
    swarm = SwarmBackend(scheduler.settings).spec(service)["env"]

    # Swarm tasks share one definition, so they share their service's credential.
    swarm_credential = auth.swarm_registration_token(scheduler.settings.instance_secret_value(), service.name)
    assert swarm == {**expected, "TRAINFAAS_REGISTRATION_TOKEN": swarm_credential} and expected.items() <= process.items()
    assert expected["TRAINFAAS_REDIS_URL"] == scheduler.settings.redis_url and expected["TRAINFAAS_REGISTRATION_TOKEN"] == "tfr_registration"
    assert (expected["OMP_NUM_THREADS"], expected["CUDA_VISIBLE_DEVICES"]) == ("1", "")  # regular-xs: half a CPU, no GPU
    assert not {"TRAINFAAS_DATABASE_URL", "TRAINFAAS_INSTANCE_SECRET"} & set(process)


def test_an_unknown_instance_type_fails_the_start_and_shows_in_the_services_health(scheduler: Scheduler) -> None:
    typed = MemoryBackend(scheduler.settings)
    keeper = Scheduler(scheduler.settings, typed, scheduler.redis, clock=scheduler.clock)
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", min_instances=1, backend="memory", instance_type="huge")

    keeper.keep_fleet(service)

    (failed,) = Instance.select().where(Instance.service == service.name)
    assert failed.status == "failed" and "instance type 'huge'" in failed.last_exit_reason
    typed.manages_replicas = True  # a swarm-like backend refuses in set_replicas, inside the fleet keeper
    scheduler.clock.now += service.polling_interval_s  # type: ignore[attr-defined]
    keeper.keep_fleets()
    assert "instance type 'huge'" in (Service.get_by_id(service.name).error_reason or "")


def test_each_instance_the_scheduler_starts_gets_a_one_time_registration_token_of_its_own(scheduler: Scheduler) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", min_instances=2, max_instances=2, backend="memory")

    scheduler.keep_fleet(service)

    started = scheduler.backend.registrations  # type: ignore[attr-defined]
    assert len(started) == 2 and len(set(started.values())) == 2
    for instance_id, registration in started.items():
        row = Instance.get_by_id(instance_id)
        assert registration.startswith("tfr_") and row.registration_hash == auth.hash_secret(registration)
        # Expiry is wall-clock time, as the API checks it, whatever the scheduler's clock says.
        assert row.registration_expires_at == pytest.approx(time.time() + scheduler.settings.registration_ttl_s, abs=30)
        assert row.token_hash is None and registration not in str(row.__data__)


def test_a_job_held_by_a_live_instance_is_never_requeued_however_long_its_claim_takes(scheduler: Scheduler) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep")
    instance = Instance.create(service=service, status="running", heartbeat_at=scheduler.clock())
    row = states.queue(Execution.create(service=service, function="noop", timeout_s=9, drain_time_s=1, on_reset="rerun").id)
    try_enqueue_many(scheduler.redis, [row])
    passes: list[int] = []

    def slow_claim(execution_id: str, attempt: int) -> object:
        for _ in range(5):  # the API's write lock waits, and the instance retries: passes go by
            scheduler.clock.now += 10 * MISSING_GRACE_S  # type: ignore[attr-defined]
            passes.append(scheduler.reconciler.reconcile(scheduler.clock()))
        Execution.update(status="in-progress").where(Execution.id == execution_id).execute()  # then it is claimed
        return claimed(execution_id, attempt)

    started: list[tuple[str, int]] = []
    pulling_instance(scheduler.settings.redis_url, started, slow_claim, instance_id=instance.id, service=service.name)._pull(block=False)
    assert passes == [0] * 5 and started == [(row.id, 1)]
    assert scheduler.redis.lrange("rq:queue:mgmt-train-sleep", 0, -1) == []  # no duplicate job
    assert scheduler.redis.lrange(queues.held_key(instance.id), 0, -1) == [] and scheduler.reconciler.missing_since == {}


@pytest.mark.parametrize("ended", ["lost", "exited", "failed", "unknown"])
def test_a_job_held_by_an_instance_that_ended_is_requeued_once_and_its_held_list_removed(scheduler: Scheduler, ended: str) -> None:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep")
    instance_id = "gone" if ended == "unknown" else Instance.create(service=service, status="running").id
    row = states.queue(Execution.create(service=service, function="noop", timeout_s=9, drain_time_s=1, on_reset="rerun").id)
    try_enqueue_many(scheduler.redis, [row])
    assert queues.take(scheduler.redis, "rq:queue:mgmt-train-sleep", instance_id, timeout_s=None) == f"{row.id}-1"
    scheduler.reconcile()  # held by a live instance (or one the database does not know: removed at once)
    if ended != "unknown":
        assert scheduler.reconciler.missing_since == {}
        Instance.update(status=ended).where(Instance.id == instance_id).execute()
        scheduler.reconcile()
    assert not scheduler.redis.exists(queues.held_key(instance_id)) and not scheduler.redis.sismember(queues.HELD_KEY, instance_id)
    assert scheduler.redis.lrange("rq:queue:mgmt-train-sleep", 0, -1) == []  # missing: re-enqueued after the grace
    for _ in range(3):
        scheduler.clock.now += MISSING_GRACE_S  # type: ignore[attr-defined]
        scheduler.reconcile()
    assert scheduler.redis.lrange("rq:queue:mgmt-train-sleep", 0, -1) == [f"{row.id}-1".encode()]
