"""Chaos soak: many short executions on an autoscaled service, and a few real (tiny) image
classification trainings on a second one, while a driver, bounded in time and count, kills
instances and work processes of both, drains instances, flushes and restarts Redis, and
restarts the scheduler and the API. Then it checks, from the database, that nothing was lost or
duplicated and that every record is consistent, and that no queue holds more jobs than the database has
executions waiting on it (none, once every execution has ended).

    python -m tests.chaos.soak [--executions 2000] [--trainings 6] [--chaos-s 180] [--seed 1] [--stall-s 120] [--baseline 200]

It ends when every execution has ended, and fails when none has ended for ``--stall-s`` seconds.
With ``--baseline N`` it first runs N executions without faults and prints the soak's throughput
against theirs: ``bench chaos_throughput: executions_per_s=… baseline=… ratio=… goal=0.5 pass|miss``.

A real training that loses its attempt resumes from its last checkpoint on the next one.

Prints exactly one verdict line and exits non-zero on any violation:
``chaos: executions=N kills=K resets=R reruns=X lost=L duplicates=D verdict=pass|fail``
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import redis
from peewee import fn

from tests.perf.common import BENCH_LIMITS, report
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import LIVE_INSTANCE, WAITING_EXECUTION
from trainfaas.services.core.statuses import TERMINAL_EXECUTION as TERMINAL
from trainfaas.services.local.stack import Stack
from trainfaas.services.sdk.client import Client
from trainfaas.services.store import queues
from trainfaas.services.store.records import Attempt, Execution, Instance, StatusLog

SERVICE = "mgmt-train-sleep"
TRAINING_ARCHITECTURE = "resnet18"
TRAINING_SERVICE = f"mgmt-train-{TRAINING_ARCHITECTURE}"
# A training of a few seconds on two CPU cores that still writes several checkpoints.
# The soak's sleep-service throughput under faults, against the same run's without: faults may
# cost time (resets, reruns, restarts), not most of it.
CHAOS_THROUGHPUT_GOAL = 0.5
TINY_TRAINING = {"max_steps": 40, "batch_size": 32, "input_size": 16, "eval_every_steps": 10}
# Every reason a reset may give for what the driver does; anything else is a violation.
EXPECTED_RESET_WORDS = ("SIGKILL", "SIGTERM", "drain time exceeded", "heartbeat lost", "gone", "instance stopped",
                        "killed by", "exit code", "exited", "did not register")


@dataclass
class Driver:
    """Does harm at random, bounded by ``until`` and ``max_actions``; counts what it did."""

    stack: Stack
    rng: random.Random
    until: float
    max_actions: int
    done: Counter[str] = field(default_factory=Counter)
    once: set[str] = field(default_factory=set)

    def run(self) -> None:
        while time.monotonic() < self.until and sum(self.done.values()) < self.max_actions:
            time.sleep(self.rng.uniform(0.5, 1.5))
            action = self.rng.choice(["kill-instance", "kill-work", "kill-work", "drain-instance", "redis", "scheduler", "api"])
            if action in ("redis", "scheduler", "api") and action in self.once:
                continue
            if getattr(self, action.replace("-", "_"))():
                self.done[action] += 1
                if action in ("redis", "scheduler", "api"):
                    self.once.add(action)

    def _instances(self) -> list[Instance]:
        services = (SERVICE, TRAINING_SERVICE)
        return [i for i in Instance.select().where(Instance.service.in_(services) & Instance.status.in_(LIVE_INSTANCE)) if i.pid]

    def _signal(self, pid: int, sig: signal.Signals) -> bool:
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    def kill_instance(self) -> bool:
        instances = self._instances()
        return bool(instances) and self._signal(self.rng.choice(instances).pid, signal.SIGKILL)

    def kill_work(self) -> bool:
        pids = [entry["pid"] for i in self._instances() for entry in i.running if entry.get("pid")]
        return bool(pids) and self._signal(self.rng.choice(pids), signal.SIGKILL)

    def drain_instance(self) -> bool:
        instances = self._instances()
        return bool(instances) and self._signal(self.rng.choice(instances).pid, signal.SIGTERM)

    def redis(self) -> bool:
        """Flush Redis and restart it: queued jobs are gone; the reconciler must put them back."""
        if self.stack.redis is None:
            redis.Redis.from_url(self.stack.settings.redis_url).flushdb()
            return True
        redis.Redis.from_url(self.stack.settings.redis_url).flushall()
        self.stack.redis.stop()
        self.stack.redis.start()
        return True

    def scheduler(self) -> bool:
        """The scheduler dies without stopping anything; a new one adopts what it finds."""
        from trainfaas.scheduler.backends import create_all
        from trainfaas.scheduler.daemon import Scheduler

        old = self.stack.scheduler
        assert old is not None and old.apscheduler is not None
        old.apscheduler.shutdown(wait=True)
        old.deliverer.stop()  # its threads die with it: none may outlive the drill and reach later databases
        old.stopping.set()  # and its doorbell thread
        try:
            old.lock.release()
        except Exception:  # noqa: BLE001 - the lock may have expired or gone with a Redis flush
            pass
        default, *extra = create_all(self.stack.settings)
        self.stack.scheduler = Scheduler(self.stack.settings, default, extra_backends=extra)
        self.stack.scheduler.start()
        self.retired = old
        return True

    def api(self) -> bool:
        assert self.stack.api is not None
        self.stack.api.terminate()
        self.stack.api.wait(timeout=30)
        self.stack.start_api()
        return True


def enqueue_all(client: Client, rng: random.Random, count: int, trainings: int, settings: Settings) -> list[str]:
    """Enqueue ``count`` sleep-service executions (every tenth a sleep training) and ``trainings``
    real image classification trainings on the digits sample."""
    client.update_service(SERVICE, scaling_type="autoscale", min_instances=1, max_instances=3, queue_length=4,
                          polling_interval_s=1, cooldown_s=5, max_attempts=5, drain_time_s=2)
    ids = []
    if trainings:
        from trainfaas.adapters.datasets import write_digits

        dataset = settings.dataset_roots[0] / "digits"
        write_digits(dataset)
        client.update_service(TRAINING_SERVICE, scaling_type="autoscale", min_instances=0, max_instances=2, queue_length=2,
                              polling_interval_s=1, cooldown_s=5, max_attempts=8, drain_time_s=2)
        for n in range(trainings):
            real = client.create_model(f"chaos-digits-{n}", TRAINING_ARCHITECTURE, configuration={**TINY_TRAINING, "seed": n})
            ids.append(client.train(real["id"], dataset=str(dataset))["id"])
    for n in range(count):
        if n % 10 == 0:  # a model trains once at a time: one model per training
            model = client.create_model(f"chaos-{n}", "sleep", configuration={"seconds": 0.3, "steps": 3})
            ids.append(client.train(model["id"], configuration={"seconds": rng.uniform(0.2, 1.0)})["id"])
        else:
            ids.append(client.enqueue(SERVICE, "noop", {"n": n})["id"])
    return ids


def check(ids: list[str], driver: Driver) -> tuple[dict[str, int], list[str]]:
    """Count what happened and list every violation of the guarantees."""
    problems: list[str] = []
    executions = list(Execution.select().where(Execution.id.in_(ids)))
    lost = [e.id for e in executions if e.status not in TERMINAL] + sorted(set(ids) - {e.id for e in executions})
    statuses = {e.id: f"{e.status} on {e.service_id}, attempt {e.attempt}, {e.message!r}" for e in executions}
    problems += [f"execution {i} lost (not ended: {statuses.get(i, 'no row')})" for i in lost]
    duplicates = 0
    for execution in executions:
        attempts = list(Attempt.select().where(Attempt.execution == execution.id).order_by(Attempt.number))
        log = list(StatusLog.select().where(StatusLog.execution == execution.id).order_by(StatusLog.id))
        if len(attempts) > execution.max_attempts:
            problems.append(f"execution {execution.id}: {len(attempts)} attempts > max {execution.max_attempts}")
        for earlier, later in zip(attempts, attempts[1:], strict=False):
            if earlier.ended_at is None or earlier.ended_at > later.started_at:
                duplicates += 1
                problems.append(f"execution {execution.id}: attempts {earlier.number} and {later.number} overlapped")
        if sum(1 for a in attempts if a.outcome == "success") > 1 or (execution.status == "success" and attempts[-1].outcome != "success"):
            duplicates += 1
            problems.append(f"execution {execution.id}: a result from a stale attempt was accepted")
        if any(b.at < a.at for a, b in zip(log, log[1:], strict=False)):
            problems.append(f"execution {execution.id}: status log goes back in time")
        if sum(1 for row in log if row.status == "in-progress" and row.message.startswith("attempt ")) != len(attempts):
            problems.append(f"execution {execution.id}: status log and attempt records disagree")
        if execution.status == "failed":
            problems.append(f"execution {execution.id} failed ({execution.error}); the driver causes no failure")
        if execution.status == "aborted" and not any(word in (execution.error or "") for word in EXPECTED_RESET_WORDS):
            problems.append(f"execution {execution.id} aborted for an unexpected reason: {execution.error}")
    resets = Attempt.select().where(Attempt.execution.in_(ids) & (Attempt.outcome == "reset")).count()
    reruns = StatusLog.select().where(StatusLog.execution.in_(ids) & (StatusLog.status == "rerun")).count()
    kills = driver.done["kill-instance"] + driver.done["kill-work"] + driver.done["drain-instance"]
    counts = {"executions": len(ids), "kills": kills, "resets": resets, "reruns": reruns, "lost": len(lost), "duplicates": duplicates}
    return counts, problems


def queue_excess(settings: Settings) -> list[str]:
    """Each service's queue holding more jobs than the database has executions waiting on it: the
    excess are duplicate enqueues, which instances pop only to be refused."""
    connection = redis.Redis.from_url(settings.redis_url)
    excess = []
    for service in (SERVICE, TRAINING_SERVICE):
        depth = queues.queue_depth(connection, service)
        waiting = Execution.select().where((Execution.service == service) & Execution.status.in_(WAITING_EXECUTION)).count()
        if depth > waiting:
            excess.append(f"queue of {service} holds {depth} jobs, the database has {waiting} executions waiting on it")
    return excess


def wait_for_ends(ids: list[str], stall_s: float) -> bool:
    """Wait until every execution of ``ids`` has ended; True when they did, False after ``stall_s``
    without progress: no execution ended, changed status, or moved its progress (a stall: the
    soak fails on progress, not on a clock)."""
    seen, progressed_at = None, time.monotonic()
    while True:
        ended = Execution.select().where(Execution.id.in_(ids) & Execution.status.in_(TERMINAL)).count()
        if ended == len(ids):
            return True
        moving = Execution.select(fn.SUM(Execution.progress)).where(Execution.id.in_(ids) & Execution.status.not_in(TERMINAL)).scalar()
        state = (ended, StatusLog.select().where(StatusLog.execution.in_(ids)).count(), moving)
        if state != seen:
            seen, progressed_at = state, time.monotonic()
        elif time.monotonic() - progressed_at > stall_s:
            print(f"chaos: stalled: nothing moved for {stall_s:.0f} s; {len(ids) - ended} not ended", file=sys.stderr)
            for row in Instance.select().where(Instance.status.in_(LIVE_INSTANCE)):
                print(f"  live instance {row.id} of {row.service_id}: {row.status}, running {row.running}", file=sys.stderr)
            return False
        time.sleep(0.5)


def rate(ids: list[str], started: float) -> float:
    """Executions of the sleep service among ``ids`` per second, from ``started`` to the last one's end."""
    rows = list(Execution.select(Execution.finished_at).where(Execution.id.in_(ids) & (Execution.service == SERVICE)))
    last = max((row.finished_at or started for row in rows), default=started)
    return len(rows) / (last - started) if last > started else 0.0


def soak(settings: Settings, executions: int, chaos_s: float, max_actions: int, seed: int, stall_s: float = 120.0,
         trainings: int = 0, baseline: int = 0) -> bool:
    """Run the soak; with ``baseline`` executions first run without faults, print the soak's
    throughput against theirs as a benchmark line."""
    # Thousands of executions in one project, fault options allowed: the quotas and diagnostics of a drill.
    settings = settings.model_copy(update=BENCH_LIMITS)
    rng = random.Random(seed)
    stack = Stack(settings).start()
    driver = Driver(stack, rng, until=0.0, max_actions=max_actions)
    try:
        client = Client.from_settings(settings)
        calm_rate = 0.0
        if baseline:
            started = time.time()
            calm = enqueue_all(client, random.Random(seed + 1), baseline, 0, settings)
            if not wait_for_ends(calm, stall_s):
                raise RuntimeError("the executions without faults did not all end")
            calm_rate = rate(calm, started)
        started = time.time()
        ids = enqueue_all(client, rng, executions, trainings, settings)
        driver.until = time.monotonic() + chaos_s
        thread = threading.Thread(target=driver.run, name="chaos")
        thread.start()
        thread.join()
        wait_for_ends(ids, stall_s)
        chaos_rate = rate(ids, started)
        counts, problems = check(ids, driver)
        problems += queue_excess(settings)
        resumed = StatusLog.select().where(StatusLog.execution.in_(ids) & StatusLog.message.startswith("resuming from checkpoint")).count()
    finally:
        stack.stop(drain_timeout_s=5.0)
        retired = getattr(driver, "retired", None)
        if retired is not None:
            for backend in retired.backends.values():
                backend.close(5.0)
    for problem in problems[:50]:
        print(f"violation: {problem}", file=sys.stderr)
    verdict = "pass" if not problems else "fail"
    print("chaos: " + " ".join(f"{k}={v}" for k, v in counts.items()) + f" verdict={verdict}")
    print(f"chaos actions: {dict(driver.done)}; reruns that resumed a training from a checkpoint: {resumed}")
    if baseline:
        report("chaos_throughput", "executions_per_s", chaos_rate, calm_rate, CHAOS_THROUGHPUT_GOAL, higher_is_better=True,
               extra={"executions": executions, "baseline_executions": baseline, "actions": dict(driver.done)})
    return not problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--trainings", type=int, default=6, help="real tiny image classification trainings among them")
    parser.add_argument("--chaos-s", type=float, default=180.0)
    parser.add_argument("--max-actions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stall-s", type=float, default=120.0, help="fail when no execution ends for this long")
    parser.add_argument("--baseline", type=int, default=200, help="executions run first without faults, for the throughput figure")
    args = parser.parse_args()
    from tests.perf.common import bench_settings

    ok = soak(bench_settings(reconcile_interval_s=1.0), args.executions, args.chaos_s, args.max_actions, args.seed,
              stall_s=args.stall_s, trainings=args.trainings, baseline=args.baseline)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
