"""``GET /metrics`` in the Prometheus text format, for an admin token or a ``metrics`` token.

Three sources, one answer:

- the database's figures, read at scrape time (services/control/telemetry.py): the same from
  every gunicorn worker and every API process;
- the API's own requests (by route template, method and status, with a latency histogram),
  counted in each worker. Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` (set by
  deploy/gunicorn_conf.py to ``<home>/prometheus``) makes prometheus_client's multiprocess mode
  sum every worker's counts;
- the scheduler's tick durations, which the scheduler adds to a histogram in Redis
  (services/store/telemetry.py).
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import MetricsText
from trainfaas.services.control.telemetry import DatabaseCollector
from trainfaas.services.control.tokens import Principal
from trainfaas.services.store import queues, telemetry

bp = Blueprint("metrics", __name__)
REQUESTS_REGISTRY = CollectorRegistry()  # this process's own, when not in multiprocess mode
REQUESTS = Counter("trainfaas_api_requests", "API requests by route, method and status.", ["route", "method", "status"],
                   registry=REQUESTS_REGISTRY)
LATENCY = Histogram("trainfaas_api_request_seconds", "API request latency by route and method.", ["route", "method"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=REQUESTS_REGISTRY)


def instrument(app: Flask) -> None:
    """Count every request of ``app`` by its route template (bounded: never the raw path)."""
    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if started is not None:
            LATENCY.labels(route, request.method).observe(time.perf_counter() - started)
        REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        return response


class SchedulerTicks(Collector):
    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily("trainfaas_scheduler_tick_seconds", "Duration of the scheduler's ticks.")
        try:
            buckets, total = telemetry.read_ticks(self.connection)
        except redis.RedisError:
            return
        family.add_metric([], buckets, total)
        yield family


class Requests(Collector):
    """This process's request figures, or every worker's in multiprocess mode."""

    def collect(self) -> Iterator[Metric]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            yield from merged.collect()
        else:
            yield from REQUESTS_REGISTRY.collect()


@endpoint(bp, "GET", "/metrics", response=MetricsText, access="metrics", media_type=CONTENT_TYPE_LATEST)
def metrics(principal: Principal) -> Response:
    """Prometheus metrics: queues, executions, instances, autoscaling, durations, API requests, scheduler ticks."""
    connection = current_app.extensions["redis"]

    def depth(service: str) -> int | None:
        try:
            return queues.queue_depth(connection, service)
        except redis.RedisError:
            return None

    registry = CollectorRegistry()
    registry.register(DatabaseCollector(depth))
    registry.register(Requests())
    registry.register(SchedulerTicks(connection))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
