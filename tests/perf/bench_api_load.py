"""API under load, on SQLite and on PostgreSQL: the API under gunicorn (no scheduler, no instances)
over a database holding ``--executions`` executions (10,000 by default, spread over 8 services, 40
models and every status, written in bulk before the clock starts).

1. **List and filter** (after ANALYZE: a database in use has its planner statistics):
   ``--list-requests`` GET requests, one at a time, cycling through the
   execution list (first page, a deep page), filters by status, service, model and creation time,
   and a search by name; p95 of the request latency. Goal 50 ms.
2. **Concurrent enqueue**: ``--clients`` client threads each POST ``--per-client`` no-op executions
   as fast as they are answered (each writes the execution row, its status log and the queue
   entry); p95 of the request latency. Goal 100 ms.

Baseline: the goal itself (ratio = p95 / goal, pass at ratio <= 1), as for the dispatch benchmark.
For scale, the p95 of ``GET /healthz`` (no database) under the same 50 clients, measured in the same
run, is printed and saved. PostgreSQL is the server named by ``--postgres`` (default: the
TRAINFAAS_TEST_POSTGRES_URL variable, else postgresql://postgres@127.0.0.1:5432/postgres); a
scratch database is created there and dropped afterwards. Without a reachable server the
PostgreSQL half says so and is left out.

    python -m tests.perf.bench_api_load [--executions 10000] [--clients 50] [--per-client 20]
"""
from __future__ import annotations

import argparse
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse, urlunparse

import requests

from tests.perf.common import bench_settings, parse_arguments, report
from tests.perf.stackrun import percentile
from trainfaas.services.local.stack import Stack

SERVICES = [f"mgmt-train-load{n}" for n in range(8)]
STATUSES = ("success", "success", "success", "failed", "aborted", "terminated", "pending", "in-progress")


def seed_database(count: int) -> None:
    """Write ``count`` executions (with models, services and status logs) in bulk."""
    from trainfaas.services.store.database import database
    from trainfaas.services.store.records import Execution, Model, Service, StatusLog

    now = time.time()
    with database.atomic():
        for name in SERVICES:
            Service.insert(name=name, architecture=name.removeprefix("mgmt-train-")).on_conflict_ignore().execute()
        models = [{"id": uuid.uuid4().hex, "name": f"model-{n}", "architecture": "sleep", "task": "diagnostic"} for n in range(40)]
        Model.insert_many(models).execute()
    rng = random.Random(0)
    for start in range(0, count, 1000):
        rows, logs = [], []
        for n in range(start, min(start + 1000, count)):
            created = now - (count - n) * 60.0
            status = rng.choice(STATUSES)
            execution_id = uuid.uuid4().hex
            rows.append({"id": execution_id, "name": f"train-{n}", "service": rng.choice(SERVICES), "function": "train_model",
                         "model": rng.choice(models)["id"], "status": status, "created_at": created,
                         "input": {}, "timeout_s": 3600.0, "drain_time_s": 600.0, "on_reset": "rerun"})
            logs.append({"execution": execution_id, "status": "created", "attempt": 0, "at": created, "message": ""})
        with database.atomic():
            Execution.insert_many(rows).execute()
            StatusLog.insert_many(logs).execute()
    # A database in use has planner statistics (PostgreSQL's autovacuum gathers them; SQLite's come
    # from ANALYZE): without them, right after a bulk load, a planner guesses a filter matches a few
    # rows and sorts thousands.
    database.execute_sql("ANALYZE")


def list_requests(count: int, model_id: str, deep_cursor: str) -> list[str]:
    """The mix of list/filter/search queries, cycled ``count`` times; ``deep_cursor`` points about
    halfway into the execution list."""
    week_ago = time.time() - 7 * 86400
    mix = [
        "/api/v1/executions?limit=50",
        f"/api/v1/executions?limit=50&cursor={deep_cursor}",
        "/api/v1/executions?status=failed&limit=50",
        f"/api/v1/executions?service={SERVICES[3]}&limit=50",
        f"/api/v1/executions?model={model_id}&limit=50",
        f"/api/v1/executions?created_after={week_ago}&limit=50",
        "/api/v1/executions?q=train-99&limit=50",
        "/api/v1/models?limit=50",
    ]
    return [mix[n % len(mix)] for n in range(count)]


def timed(session: requests.Session, method: str, url: str, **kwargs: Any) -> float:
    started = time.perf_counter()
    response = session.request(method, url, timeout=60, **kwargs)
    elapsed = time.perf_counter() - started
    if response.status_code >= 400:
        raise RuntimeError(f"{method} {url} answered {response.status_code}: {response.text[:300]}")
    return elapsed


def concurrently(clients: int, per_client: int, call: Callable[[requests.Session], float]) -> list[float]:
    """Run ``call`` ``per_client`` times in each of ``clients`` threads, all released together."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock, gate = threading.Lock(), threading.Barrier(clients)

    def client() -> None:
        with requests.Session() as session:
            gate.wait()
            for _ in range(per_client):
                try:
                    elapsed = call(session)
                except BaseException as error:  # noqa: BLE001 - reported after the run
                    errors.append(error)
                    return
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed; first: {errors[0]}")
    return latencies


def run(database: str, database_url: str, args: argparse.Namespace) -> None:
    settings = bench_settings(database_url=database_url)
    with Stack(settings) as stack:
        # Only the API is under test: stop the scheduler so no instance competes for the CPU.
        stack.scheduler.shutdown(0)
        stack.scheduler = None
        started = time.perf_counter()
        seed_database(args.executions)
        print(f"  {database}: wrote {args.executions} executions in {time.perf_counter() - started:.1f} s")
        client = stack.admin_client()  # the admin token the stack wrote on start
        headers = {"Authorization": client.http.headers["Authorization"]}
        model_id = client.request("GET", "/api/v1/models?limit=1")["items"][0]["id"]
        base = settings.api_url
        with requests.Session() as session:
            session.headers.update(headers)
            # Walk halfway down the list page by page (as a client would) for a deep page's cursor.
            cursor = ""
            for _ in range(args.executions // 2 // 50):
                cursor = session.get(f"{base}/api/v1/executions?limit=50&cursor={cursor}", timeout=60).json()["next_cursor"]
            for path in list_requests(16, model_id, cursor):  # warm the workers and the database's caches
                timed(session, "GET", base + path)
            listing = [timed(session, "GET", base + path) for path in list_requests(args.list_requests, model_id, cursor)]

        def healthz(session: requests.Session) -> float:
            return timed(session, "GET", base + "/healthz")

        def enqueue(session: requests.Session) -> float:
            session.headers.update(headers)
            return timed(session, "POST", f"{base}/api/v1/services/{SERVICES[0]}/executions", json={"function": "noop", "input": {}})

        floor = concurrently(args.clients, args.per_client, healthz)
        enqueues = concurrently(args.clients, args.per_client, enqueue)
    extra = {"database": database, "executions": args.executions, "clients": args.clients,
             "healthz_p95_s": percentile(floor, 95), "list_p50_s": percentile(listing, 50), "enqueue_p50_s": percentile(enqueues, 50)}
    report(f"api-list-{database}", "p95_s", percentile(listing, 95), args.list_goal, goal=1.0, extra={**extra, "requests": len(listing)})
    report(f"api-enqueue-{database}", "p95_s", percentile(enqueues, 95), args.enqueue_goal, goal=1.0, extra={**extra, "requests": len(enqueues)})
    print(f"  ({database}: baseline = the goal in seconds; GET /healthz p95 under {args.clients} clients: "
          f"{percentile(floor, 95) * 1000:.1f} ms; list p50 {percentile(listing, 50) * 1000:.1f} ms;"
          f" enqueue p50 {percentile(enqueues, 50) * 1000:.1f} ms)")


@contextmanager
def scratch_postgres(server_url: str) -> Iterator[str | None]:
    """A fresh database on the server, dropped afterwards; None if the server cannot be reached."""
    import psycopg2

    name = f"trainfaas_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg2.connect(server_url, connect_timeout=5)
    except psycopg2.OperationalError as error:
        print(f"  postgresql: left out, cannot connect to {server_url}: {str(error).strip()}")
        yield None
        return
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunparse(urlparse(server_url)._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def add_postgres_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--postgres", default=os.environ.get("TRAINFAAS_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/postgres",
                        help="the PostgreSQL server to make a scratch database on")


def on_both_databases(run: Callable[[str, str, argparse.Namespace], None], args: argparse.Namespace) -> None:
    """``run`` on SQLite, then on a scratch database of ``args.postgres`` when that server answers."""
    run("sqlite", "", args)
    with scratch_postgres(args.postgres) as url:
        if url:
            run("postgresql", url, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--list-requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=20)
    parser.add_argument("--list-goal", type=float, default=0.050, help="seconds")
    parser.add_argument("--enqueue-goal", type=float, default=0.100, help="seconds")
    add_postgres_argument(parser)
    args = parse_arguments(parser, {"executions": 50, "list_requests": 20, "clients": 4, "per_client": 3})
    on_both_databases(run, args)


if __name__ == "__main__":
    main()
