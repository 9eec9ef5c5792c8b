"""Warm dispatch latency: one idle, warmed-up instance of mgmt-train-sleep (min_instances=1, three
noop executions run first so that it is registered and its spare work process is ready), then
``--executions`` noop executions enqueued one at a time over HTTP, each waited for before the next.

Latency = the execution's "in-progress" status-log time minus time.time() taken just before the
enqueue POST. Reported as p50 and p99. Baseline: the goal itself (0.050 s for p50, 0.250 s for p99),
so ratio = value / goal and the pass mark is ratio <= 1.0. For scale, the median LPUSH+BLPOP round
trip on the same Redis, measured in the same run, is saved in the JSON as ``redis_rtt_s``.

    python -m tests.perf.bench_dispatch [--executions 200] [--p50-goal 0.05] [--p99-goal 0.25]
"""
from __future__ import annotations

import argparse
import time

from tests.perf.common import bench_settings, parse_arguments, report
from tests.perf.stackrun import SERVICE, percentile, redis_round_trip_s, status_at, wait_instance_running, wait_status, warm_up
from trainfaas.services.local.stack import Stack
from trainfaas.services.sdk.client import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--p50-goal", type=float, default=0.050, help="seconds")
    parser.add_argument("--p99-goal", type=float, default=0.250, help="seconds")
    args = parse_arguments(parser, {"executions": 5})

    settings = bench_settings()
    latencies: list[float] = []
    with Stack(settings):
        client = Client.from_settings(settings)
        client.update_service(SERVICE, min_instances=1, max_instances=1)
        wait_instance_running(SERVICE)
        warm_up(client)
        rtt = redis_round_trip_s(settings.redis_url)
        for _ in range(args.executions):
            requested = time.time()
            execution_id = client.enqueue(SERVICE, "noop", {})["id"]
            wait_status(execution_id, ("success",), 60.0)
            started = status_at(execution_id, "in-progress")
            assert started is not None, f"execution {execution_id} has no in-progress log row"
            latencies.append(started - requested)
    extra = {"executions": args.executions, "redis_rtt_s": rtt, "min_s": min(latencies), "max_s": max(latencies)}
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    report("dispatch-p50", "p50_s", p50, args.p50_goal, goal=1.0, extra={**extra, "p50_s": p50})
    report("dispatch-p99", "p99_s", p99, args.p99_goal, goal=1.0, extra={**extra, "p99_s": p99})
    print(f"  (baseline = the goal in seconds; same-run Redis LPUSH+BLPOP round trip: {rtt * 1000:.3f} ms)")


if __name__ == "__main__":
    main()
