"""Autoscale makespan: N sleep-only executions of t seconds on a service with max M instances,
starting from zero, against the ideal ceil(N/M)*t plus one cold start measured in the same run;
and the idle instance-seconds spent after the queue drained (the price of the cooldown), against
M × (cooldown + the scheduler's polling interval) per run.

Two cases run by default: 24 executions of 2 s on at most 4 instances, and 6 of 6 s on at most 3.
``--case NxTxM`` (repeatable) runs others. Each run also prints where its time went, from the
timestamps of the database (status log, instances, scaling events) and of the instances' logs.

    python -m tests.perf.bench_autoscale [--case 24x2x4 --case 6x6x3] [--cooldown 10]
"""
from __future__ import annotations

import argparse
import math
import re
import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.perf.common import bench_settings, parse_arguments, report, wait_for
from trainfaas.services.local.stack import Stack
from trainfaas.services.sdk.client import Client
from trainfaas.services.store.records import Execution, Instance, ServiceEvent, StatusLog

SERVICE = "mgmt-train-sleep"
POLLING_INTERVAL_S = 1.0
NOT_ENDED = ["running", "full", "initializing", "terminating"]
SERVING = re.compile(r"^(\S+ \S+) INFO trainfaas\.instance: instance ([0-9a-f]+) serving ")


@dataclass(frozen=True)
class Case:
    executions: int
    seconds: float
    max_instances: int

    @classmethod
    def parse(cls, text: str) -> Case:
        executions, seconds, max_instances = text.split("x")
        return cls(int(executions), float(seconds), int(max_instances))

    @property
    def name(self) -> str:
        return f"{self.executions}x{self.seconds:g}s-max{self.max_instances}"


def live_instances() -> int:
    """Instances of the service not yet ended (a draining one still counts: it may still pull)."""
    return Instance.select().where((Instance.service == SERVICE) & Instance.status.in_(NOT_ENDED)).count()


def count(ids: list[str], *statuses: str) -> int:
    """How many of ``ids`` the database holds in one of ``statuses``. The script watches the
    database, not the API: polling the API would load the machine whose starts it measures."""
    return Execution.select().where(Execution.id.in_(ids) & Execution.status.in_(statuses)).count()  # type: ignore[no-any-return]


def cold_start_s(client: Client, label: str) -> float:
    """From enqueue on a service with no instance to the execution in progress (the database's times)."""
    model = client.create_model(f"cold-{label}", "sleep", configuration={"seconds": 0.1, "steps": 1})
    ids = [client.train(model["id"])["id"]]
    wait_for(lambda: count(ids, "success") == 1, 120, "the cold-start execution")
    claimed = StatusLog.get((StatusLog.execution == ids[0]) & (StatusLog.status == "in-progress")).at
    return claimed - Execution.get_by_id(ids[0]).created_at  # type: ignore[no-any-return]


def registrations(home: Path) -> dict[str, float]:
    """When each instance registered (its log's "serving" line), as epoch seconds."""
    found: dict[str, float] = {}
    for path in (home / "logs").glob("instance-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if match := SERVING.match(line):
                found[match.group(2)] = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return found


def timeline(ids: list[str], since: float, until: float, home: Path) -> None:
    """Print where the run's time went, in seconds after the first enqueue."""
    executions = {e.id: e for e in Execution.select().where(Execution.id.in_(ids))}
    t0 = min(e.created_at for e in executions.values())
    claims = sorted((log.at, log.instance, log.execution_id) for log in StatusLog.select().where(
        StatusLog.execution.in_(ids) & (StatusLog.status == "in-progress")))
    fleet = list(Instance.select().where((Instance.service == SERVICE) & (Instance.started_at >= since - 1)))
    registered = registrations(home)
    events = ServiceEvent.select().where((ServiceEvent.service == SERVICE) & (ServiceEvent.at >= since - 1)).order_by(ServiceEvent.at)
    print(f"  enqueue: {len(ids)} executions within {max(e.created_at for e in executions.values()) - t0:.2f} s")
    for event in events:
        if event.at <= until + 1:
            print(f"  decision at {event.at - t0:+.2f} s: {event.action} to {event.desired} ({event.reason})")
    for instance in sorted(fleet, key=lambda i: i.started_at):
        mine = [(at, eid) for at, inst, eid in claims if inst == instance.id]
        gaps = [at - executions[previous].finished_at for (_, previous), (at, _) in zip(mine, mine[1:], strict=False)]
        print(f"  instance {instance.id[:6]}: row {instance.started_at - t0:+.2f} s, registered "
              f"{registered.get(instance.id, float('nan')) - t0:+.2f} s, first claim {(mine[0][0] - t0) if mine else float('nan'):+.2f} s, "
              f"{len(mine)} runs, gap end->next claim mean {statistics.fmean(gaps) if gaps else 0:.3f} s max {max(gaps, default=0):.3f} s")
    runs = [e.finished_at - e.started_at for e in executions.values()]
    print(f"  in-progress to finished: mean {statistics.fmean(runs):.3f} s max {max(runs):.3f} s; "
          f"last finished {max(e.finished_at for e in executions.values()) - t0:.2f} s, seen done {until - t0:.2f} s")


def run_case(client: Client, case: Case, cooldown: float, home: Path) -> tuple[float, float, float]:
    """(makespan, its ideal, idle instance-seconds) of one case."""
    client.update_service(SERVICE, scaling_type="autoscale", min_instances=0, max_instances=case.max_instances,
                          queue_length=1, polling_interval_s=POLLING_INTERVAL_S, cooldown_s=cooldown)
    wait_for(lambda: live_instances() == 0, cooldown + 60, "the service to shrink to zero before the cold start")
    cold = cold_start_s(client, case.name)
    wait_for(lambda: live_instances() == 0, cooldown + 60, "the service to shrink to zero before the run")
    models = [client.create_model(f"burst-{case.name}-{n}", "sleep", configuration={"seconds": case.seconds, "steps": 4})
              for n in range(case.executions)]  # a model trains once at a time
    since = time.time()
    ids = [client.train(model["id"])["id"] for model in models]
    wait_for(lambda: count(ids, "success") == len(ids), 600, "all executions")
    until = time.time()
    runs = list(Execution.select().where(Execution.id.in_(ids)))
    drained_at = max(e.finished_at for e in runs)
    makespan = drained_at - min(e.created_at for e in runs)  # from the first enqueue to the last end, as the database has them
    wait_for(lambda: live_instances() == 0, cooldown + 60, "the service to shrink to zero after the run")
    idle_s = sum(max(0.0, (i.ended_at or drained_at) - drained_at)
                 for i in Instance.select().where((Instance.service == SERVICE) & (Instance.started_at >= since - 1)))
    ideal = math.ceil(case.executions / case.max_instances) * case.seconds + cold
    print(f"run {case.name}: cold start {cold:.2f} s, makespan {makespan:.2f} s, ideal {ideal:.2f} s, idle {idle_s:.2f} instance-s")
    timeline(ids, since, until, home)
    return makespan, ideal, idle_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", dest="cases", action="append", type=Case.parse,
                        help="NxTxM: N executions of T seconds on at most M instances (default: 24x2x4 and 6x6x3)")
    parser.add_argument("--cooldown", type=float, default=10.0)
    args = parse_arguments(parser, {"cases": [Case(2, 0.2, 2)], "cooldown": 1.0})
    cases = args.cases or [Case(24, 2.0, 4), Case(6, 6.0, 3)]

    settings = bench_settings()
    results = []
    with Stack(settings) as stack:
        client = Client.from_settings(settings)
        for case in cases:
            results.append((case, *run_case(client, case, args.cooldown, settings.home)))
        del stack
    # A service is evaluated at its polling interval, on the scheduler's ticks: no sooner than either.
    polling_s = max(POLLING_INTERVAL_S, settings.tick_interval_s)
    for case, makespan, ideal, _ in results:
        report(f"autoscale-makespan-{case.name}", "makespan_s", makespan, ideal, goal=1.1,
               extra={"executions": case.executions, "seconds": case.seconds, "max_instances": case.max_instances,
                      "ideal_s": ideal})
    idle_s = sum(idle for *_, idle in results)
    allowance = sum(case.max_instances for case, *_ in results) * (args.cooldown + polling_s)
    report("autoscale-idle", "idle_instance_s", idle_s, allowance, goal=1.0,
           extra={"cooldown_s": args.cooldown, "polling_interval_s": polling_s, "cases": [case.name for case, *_ in results]})


if __name__ == "__main__":
    main()
