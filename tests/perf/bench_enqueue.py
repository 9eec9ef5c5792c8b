"""Enqueue near the floor, on SQLite and on PostgreSQL: the API under gunicorn (no scheduler, no
instances), each figure against a baseline measured on the same server in the same run.

1. **Saturated enqueue rate**: ``--clients`` keep-alive clients each POST ``--per-client`` no-op
   executions (``POST /api/v1/services/<name>/executions``) as fast as they are answered; requests
   per second. Baseline: ``GET /healthz`` (no database, no Redis) driven the same way. Goal 0.33x.
2. **Open-loop p95**: ``--open-requests`` enqueues sent on a fixed schedule at half the saturated
   enqueue rate, whatever the answers do (each latency counted from the moment the request was
   due, so a slow answer delays nothing and hides nothing). Baseline: the goal, 50 ms (ratio =
   p95 / 50 ms, pass at <= 1).
3. **Batch enqueue**: ``--batches`` requests of ``--batch-size`` no-op executions each
   (``POST /api/v1/services/<name>/executions/batch``), one at a time; executions recorded and
   queued per second. Baseline: the goal, 5,000 per second.

PostgreSQL is the server named by ``--postgres`` (as in bench_api_load); without one that answers,
that half says so and is left out.

    python -m tests.perf.bench_enqueue [--clients 16] [--per-client 50] [--open-requests 400] [--batches 5]
"""
from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from tests.perf.bench_api_load import add_postgres_argument, concurrently, on_both_databases, timed
from tests.perf.common import bench_settings, parse_arguments, report
from tests.perf.stackrun import percentile
from trainfaas.services.local.stack import Stack

SERVICE = "mgmt-train-sleep"
NOOP = {"function": "noop", "input": {}}


def saturated_rate(clients: int, per_client: int, call: Any) -> float:
    """Requests per second of ``clients`` closed-loop clients, ``per_client`` requests each."""
    started = time.perf_counter()
    latencies = concurrently(clients, per_client, call)
    return len(latencies) / (time.perf_counter() - started)


def open_loop(rate_per_s: float, count: int, url: str, headers: dict[str, str], body: dict[str, Any]) -> list[float]:
    """Send ``count`` POSTs on a fixed schedule of ``rate_per_s``; each latency runs from when it was due."""
    local = threading.local()

    def send(due: float) -> float:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(headers)
        response = local.session.post(url, json=body, timeout=60)
        if response.status_code >= 400:
            raise RuntimeError(f"POST {url} answered {response.status_code}: {response.text[:300]}")
        return time.perf_counter() - due

    with ThreadPoolExecutor(max_workers=64) as pool:
        start = time.perf_counter() + 0.05
        futures = []
        for n in range(count):
            due = start + n / rate_per_s
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            futures.append(pool.submit(send, due))
        return [future.result() for future in futures]


def batch_rate(session: requests.Session, url: str, batches: int, size: int) -> float:
    """Executions per second of ``batches`` batch enqueues of ``size``, one after another."""
    items = [{"function": "noop", "input": {"n": n}} for n in range(size)]
    timed(session, "POST", url, json={"executions": items[:10]})  # warm the workers' code paths
    started = time.perf_counter()
    for _ in range(batches):
        timed(session, "POST", url, json={"executions": items})
    return batches * size / (time.perf_counter() - started)


def run(database: str, database_url: str, args: argparse.Namespace) -> None:
    settings = bench_settings(database_url=database_url)
    with Stack(settings) as stack:
        stack.scheduler.shutdown(0)  # only the API is under test: no scheduler, no instances
        stack.scheduler = None
        client = stack.admin_client()
        client.update_service(SERVICE, min_instances=0, max_instances=0)
        headers = {"Authorization": client.http.headers["Authorization"]}
        base, enqueue_url = settings.api_url, f"{settings.api_url}/api/v1/services/{SERVICE}/executions"

        def healthz(session: requests.Session) -> float:
            return timed(session, "GET", base + "/healthz")

        def enqueue(session: requests.Session) -> float:
            session.headers.update(headers)
            return timed(session, "POST", enqueue_url, json=NOOP)

        concurrently(args.clients, 5, enqueue)  # warm every worker and thread
        floor = saturated_rate(args.clients, args.per_client, healthz)
        rate = saturated_rate(args.clients, args.per_client, enqueue)
        offered = rate / 2
        latencies = open_loop(offered, args.open_requests, enqueue_url, headers, NOOP)
        with requests.Session() as session:
            session.headers.update(headers)
            batched = batch_rate(session, enqueue_url + "/batch", args.batches, args.batch_size)
    extra = {"database": database, "clients": args.clients, "healthz_per_s": floor, "enqueue_per_s": rate}
    report(f"enqueue-rate-{database}", "per_s", rate, floor, goal=0.33, higher_is_better=True, extra=extra)
    report(f"enqueue-open-p95-{database}", "p95_s", percentile(latencies, 95), args.p95_goal, goal=1.0,
           extra={**extra, "offered_per_s": offered, "requests": len(latencies), "p50_s": percentile(latencies, 50)})
    report(f"enqueue-batch-{database}", "per_s", batched, args.batch_goal, goal=1.0, higher_is_better=True,
           extra={**extra, "batches": args.batches, "batch_size": args.batch_size})
    print(f"  ({database}: GET /healthz {floor:.0f}/s and enqueue {rate:.0f}/s under {args.clients} clients; open loop at"
          f" {offered:.0f}/s: p50 {percentile(latencies, 50) * 1000:.1f} ms; batch baseline = the goal in executions/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=50)
    parser.add_argument("--open-requests", type=int, default=400)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--p95-goal", type=float, default=0.050, help="seconds")
    parser.add_argument("--batch-goal", type=float, default=5000.0, help="executions per second")
    add_postgres_argument(parser)
    args = parse_arguments(parser, {"clients": 2, "per_client": 3, "open_requests": 5, "batches": 1, "batch_size": 20})
    on_both_databases(run, args)


if __name__ == "__main__":
    main()
