"""Webhooks, on SQLite and on PostgreSQL: what recording deliveries costs the state machine, and how
soon a delivery reaches its receiver.

1. **Transition cost**: ``--executions`` executions go through pending, in-progress and success
   by the state machine, first in a project without webhooks (the baseline, in the same run), then
   in one with ``--webhooks`` webhooks listening to every event (each change records that many
   deliveries in its transaction); mean seconds per change. Goal: ratio <= 2.
2. **Delivery latency**: with one webhook at a local receiver (http.server) and the deliverer
   polling every ``--poll`` seconds, ``--deliveries`` executions end one after another; p50 of the
   time from each change to its receipt. Baseline: the poll interval. Goal: ratio <= 1.

PostgreSQL is the server named by TRAINFAAS_TEST_POSTGRES_URL (a scratch database there, dropped
afterwards); without it the PostgreSQL half is left out.

    python -m tests.perf.bench_webhooks [--executions 300] [--webhooks 20] [--deliveries 30] [--poll 0.2]
"""
from __future__ import annotations

import argparse
import os
import time

from tests.conftest import wait_until
from tests.perf.bench_api_load import scratch_postgres
from tests.perf.common import parse_arguments, report, scratch_dir
from tests.perf.stackrun import percentile
from tests.webhook_receiver import Receiver
from trainfaas.scheduler.webhooks import Deliverer
from trainfaas.services.control import transitions, webhooks
from trainfaas.services.core.settings import Settings, load_settings
from trainfaas.services.core.statuses import ExecutionStatus
from trainfaas.services.store.database import database, open_database
from trainfaas.services.store.migrations import migrate
from trainfaas.services.store.records import Execution, Project, Service, Webhook, WebhookDelivery


def _executions(project: str, count: int) -> list[str]:
    service = Service.get_or_none(Service.name == "bench") or Service.create(name="bench", architecture="sleep")
    return [Execution.create(service=service, function="noop", timeout_s=60, drain_time_s=5, on_reset="rerun", project=project).id
            for _ in range(count)]


def _run(execution_id: str) -> None:
    transitions.queue(execution_id)
    transitions.claim(execution_id, 1, "bench-instance")
    transitions.finish(execution_id, 1, ExecutionStatus.SUCCESS, "done")


def seconds_per_change(ids: list[str]) -> float:
    started = time.perf_counter()
    for execution_id in ids:
        _run(execution_id)
    return (time.perf_counter() - started) / (3 * len(ids))


def transition_cost(settings: Settings, kind: str, count: int, hooks: int) -> None:
    for project in ("quiet", "hooked"):
        Project.get_or_none(Project.name == project) or Project.create(name=project)
    quiet, hooked = _executions("quiet", count), _executions("hooked", count)
    for n in range(hooks):
        webhooks.create(settings, "hooked", f"https://hooks.example.com/{n}", "s" * 16, ["*"])
    baseline = seconds_per_change(quiet)
    value = seconds_per_change(hooked)
    recorded = WebhookDelivery.select().count()
    assert recorded == 3 * count * hooks, recorded
    report(f"webhooks-transition-{kind}", "s_per_change", value, baseline, 2.0, extra={"webhooks": hooks, "executions": count})
    WebhookDelivery.delete().execute()  # never sent: their URLs are placeholders
    Webhook.delete().execute()


def delivery_latency(settings: Settings, kind: str, count: int) -> None:
    with Receiver() as receiver:
        Project.get_or_none(Project.name == "latency") or Project.create(name="latency")
        webhooks.create(settings, "latency", receiver.url, "s" * 16, ["execution.success"])
        deliverer = Deliverer(settings)
        deliverer.start()
        latencies = []
        try:
            for execution_id in _executions("latency", count):
                _run(execution_id)
                changed = time.perf_counter()
                wait_until(lambda n=len(latencies) + 1: len(receiver.received) >= n, timeout_s=30, what="the delivery", poll_s=0.002)
                latencies.append(time.perf_counter() - changed)
        finally:
            deliverer.stop()
    report(f"webhooks-latency-{kind}", "p50_s", percentile(latencies, 50), settings.webhook_poll_interval_s, 1.0,
           extra={"p95_s": percentile(latencies, 95), "deliveries": count})


def bench(kind: str, url: str, args: argparse.Namespace) -> None:
    settings = load_settings(home=scratch_dir("tfw"), database_url=url,
                             webhook_allow_hosts="127.0.0.1", webhook_poll_interval_s=args.poll)
    open_database(settings.database_url)
    migrate()
    try:
        transition_cost(settings, kind, args.executions, args.webhooks)
        delivery_latency(settings, kind, args.deliveries)
    finally:
        database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=300)
    parser.add_argument("--webhooks", type=int, default=20)
    parser.add_argument("--deliveries", type=int, default=30)
    parser.add_argument("--poll", type=float, default=0.2)
    args = parse_arguments(parser, {"executions": 10, "webhooks": 2, "deliveries": 3})
    home = scratch_dir("tfw")
    bench("sqlite", f"sqlite:///{home / 'bench.db'}", args)
    server = os.environ.get("TRAINFAAS_TEST_POSTGRES_URL", "")
    if not server:
        print("bench webhooks: PostgreSQL left out (TRAINFAAS_TEST_POSTGRES_URL is not set)")
        return
    with scratch_postgres(server) as url:
        if url is not None:
            bench("postgresql", url, args)


if __name__ == "__main__":
    main()
