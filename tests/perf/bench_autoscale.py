"""Autoscale makespan: N sleep-only executions of t seconds on a service with max M instances,
starting from zero, against the ideal ceil(N/M)*t plus one cold start measured in the same run;
and the idle instance-seconds spent after the queue drained (the price of the cooldown).

    python -m tests.perf.bench_autoscale [--executions 24] [--seconds 2] [--max 4] [--cooldown 10]
"""
from __future__ import annotations

import argparse
import math
import time

from tests.perf.common import bench_settings, parse_arguments, report, wait_for
from trainfaas.services.local.stack import Stack
from trainfaas.services.sdk.client import Client
from trainfaas.services.store.records import Execution, Instance

SERVICE = "mgmt-train-sleep"


def cold_start_s(client: Client) -> float:
    """From enqueue on a service with no instance to the execution in progress."""
    model = client.create_model("cold", "sleep", configuration={"seconds": 0.1, "steps": 1})
    started = time.monotonic()
    execution = client.train(model["id"])
    wait_for(lambda: client.get_execution(execution["id"])["status"] != "pending", 120, "the cold start")
    elapsed = time.monotonic() - started
    wait_for(lambda: client.get_execution(execution["id"])["status"] == "success", 120, "the cold-start execution")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--max", dest="max_instances", type=int, default=4)
    parser.add_argument("--cooldown", type=float, default=10.0)
    args = parse_arguments(parser, {"executions": 2, "seconds": 0.2, "max_instances": 2, "cooldown": 1.0})

    settings = bench_settings()
    with Stack(settings) as stack:
        client = Client.from_settings(settings)
        client.update_service(SERVICE, scaling_type="autoscale", min_instances=0, max_instances=args.max_instances,
                              queue_length=1, polling_interval_s=1, cooldown_s=args.cooldown)
        cold = cold_start_s(client)
        wait_for(lambda: Instance.select().where((Instance.service == SERVICE) & Instance.status.in_(["running", "full", "initializing"])).count() == 0,
                 args.cooldown + 60, "the service to shrink to zero before the run")
        models = [client.create_model(f"burst{n}", "sleep", configuration={"seconds": args.seconds, "steps": 4})
                  for n in range(args.executions)]  # a model trains once at a time
        started = time.monotonic()
        ids = [client.train(model["id"])["id"] for model in models]
        wait_for(lambda: all(client.get_execution(i)["status"] == "success" for i in ids), 600, "all executions")
        makespan = time.monotonic() - started
        drained_at = max(Execution.get_by_id(i).finished_at for i in ids)
        wait_for(lambda: Instance.select().where((Instance.service == SERVICE) & Instance.status.in_(["running", "full", "initializing", "terminating"])).count() == 0,
                 args.cooldown + 60, "the service to shrink to zero after the run")
        idle_s = sum(max(0.0, (i.ended_at or drained_at) - drained_at) for i in Instance.select().where(Instance.service == SERVICE))
        del stack
    ideal = math.ceil(args.executions / args.max_instances) * args.seconds + cold
    report("autoscale-makespan", "makespan_s", makespan, ideal, goal=1.5,
           extra={"executions": args.executions, "seconds": args.seconds, "max_instances": args.max_instances, "cold_start_s": cold})
    per_instance = args.cooldown + 2  # one cooldown plus the drain and exit of an idle instance
    report("autoscale-idle", "idle_instance_s", idle_s, args.max_instances * per_instance, goal=1.0,
           extra={"cooldown_s": args.cooldown})


if __name__ == "__main__":
    main()
