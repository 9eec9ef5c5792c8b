"""The figures of ``/metrics`` that the database holds, read at scrape time.

Gauges (queue, executions, instances, the autoscaler's last decision, health) and the counts of
ended executions and attempts are read from the database when Prometheus scrapes, not counted in
the process that saw the event: so every gunicorn worker answers the same, any number of API
processes agree, and nothing is lost when a process restarts. Durations are histograms computed
by one grouped query per figure. What no database row records (the API's own requests, the
scheduler's tick) is exported by the API itself (services/api/metrics.py).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from peewee import Case, fn
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from trainfaas.services.control.services import service_health
from trainfaas.services.core.statuses import LIVE_INSTANCE, TERMINAL_EXECUTION, WAITING_EXECUTION, ExecutionStatus
from trainfaas.services.store.records import Attempt, Execution, Instance, Service, ServiceEvent

DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
HEALTH_LEVEL = {"ok": 0, "warning": 1, "error": 2}
OPEN_STATUSES = (*WAITING_EXECUTION, ExecutionStatus.IN_PROGRESS)


def decision_code(action: str, reason: str) -> str:
    """A short, bounded code for why the autoscaler decided what it did (its reason is free text)."""
    if action == "pause":
        return "paused"
    if reason.startswith("crash loop") or action == "backoff":
        return "crash_loop"
    if reason.startswith("max_instances lowered"):
        return "max_lowered"
    if reason.startswith("fixed size"):
        return "fixed_size"
    return "cooldown" if action == "hold" else "queue_demand"


def attempt_reason(outcome: str | None, reason: str | None) -> str:
    """timeout, drain, lost, killed, code_failure, success or other: why an attempt ended."""
    text = (reason or "").lower()
    if outcome == "success":
        return "success"
    for code, words in (("timeout", ("timeout",)), ("drain", ("drain",)), ("lost", ("lost", "is gone", "silent")),
                        ("killed", ("killed", "sigkill", "out of memory", "oom"))):
        if any(word in text for word in words):
            return code
    return "code_failure" if outcome == "failed" else "other"


class DatabaseCollector(Collector):
    """Collects the database's figures on each scrape; ``queue_depth(service)`` reads Redis (None when it cannot)."""

    def __init__(self, queue_depth: Callable[[str], int | None]) -> None:
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        services = list(Service.select())
        yield from self._services(services)
        yield from self._executions()
        yield from self._durations()
        yield from self._attempts()

    def _services(self, services: list[Service]) -> Iterator[Metric]:
        queue = GaugeMetricFamily("trainfaas_queue_depth", "Jobs on the service's Redis queue.", labels=["service"])
        instances = GaugeMetricFamily("trainfaas_instances", "Live instances by status.", labels=["service", "status"])
        actual = GaugeMetricFamily("trainfaas_instances_actual", "Live instances of the service.", labels=["service"])
        desired = GaugeMetricFamily("trainfaas_instances_desired", "Instances the autoscaler last wanted.", labels=["service"])
        decision = GaugeMetricFamily("trainfaas_autoscaler_decision", "The autoscaler's last recorded decision (1), with its"
                                     " action and reason code.", labels=["service", "action", "reason"])
        decided_at = GaugeMetricFamily("trainfaas_autoscaler_decision_timestamp_seconds", "When it was taken.", labels=["service"])
        health = GaugeMetricFamily("trainfaas_service_health", "0 ok, 1 warning, 2 error.", labels=["service"])
        paused = GaugeMetricFamily("trainfaas_service_paused", "1 while the service is paused.", labels=["service"])
        live = Counter((row.service_id, row.status) for row in Instance.select(Instance.service, Instance.status)
                       .where(Instance.status.in_(LIVE_INSTANCE)))
        waiting = _count_by_service(Execution.status.in_(WAITING_EXECUTION))
        for service in services:
            name = service.name
            depth = self.queue_depth(name)
            if depth is not None:
                queue.add_metric([name], depth)
            count = sum(n for (owner, _), n in live.items() if owner == name)
            for (owner, status), n in sorted(live.items()):
                if owner == name:
                    instances.add_metric([name, status], n)
            actual.add_metric([name], count)
            last = ServiceEvent.select().where(ServiceEvent.service == name).order_by(ServiceEvent.at.desc()).first()
            if last is not None:
                desired.add_metric([name], last.desired)
                decision.add_metric([name, last.action, decision_code(last.action, last.reason)], 1)
                decided_at.add_metric([name], last.at)
            level, _ = service_health(service.error_reason, service.paused, waiting.get(name, 0), count, service.max_instances)
            health.add_metric([name], HEALTH_LEVEL[level])
            paused.add_metric([name], int(service.paused))
        yield from (queue, instances, actual, desired, decision, decided_at, health, paused)

    def _executions(self) -> Iterator[Metric]:
        open_ = GaugeMetricFamily("trainfaas_executions", "Executions not ended, by status.", labels=["service", "status"])
        rows = (Execution.select(Execution.service, Execution.status, fn.COUNT(Execution.id).alias("n"))
                .where(Execution.status.in_(OPEN_STATUSES)).group_by(Execution.service, Execution.status))
        for row in rows:
            open_.add_metric([row.service_id, row.status], row.n)
        finished = CounterMetricFamily("trainfaas_executions_finished", "Executions ended, by service, function and end status.",
                                       labels=["service", "function", "status"])
        rows = (Execution.select(Execution.service, Execution.function, Execution.status, fn.COUNT(Execution.id).alias("n"))
                .where(Execution.status.in_(TERMINAL_EXECUTION)).group_by(Execution.service, Execution.function, Execution.status))
        for row in rows:
            finished.add_metric([row.service_id, row.function, row.status], row.n)
        yield from (open_, finished)

    def _durations(self) -> Iterator[Metric]:
        started = Execution.started_at.is_null(False)
        yield _histogram("trainfaas_execution_queue_wait_seconds", "From enqueue to the start of its last attempt.",
                         Execution.started_at - Execution.created_at, started)
        yield _histogram("trainfaas_execution_run_seconds", "From the start of its last attempt to its end.",
                         Execution.finished_at - Execution.started_at, started & Execution.finished_at.is_null(False))

    def _attempts(self) -> Iterator[Metric]:
        ended = CounterMetricFamily("trainfaas_attempts_ended", "Attempts ended, by service and why: timeout, drain, lost,"
                                    " killed, code_failure, success, other.", labels=["service", "reason"])
        counts: Counter[tuple[str, str]] = Counter()
        rows = (Attempt.select(Execution.service, Attempt.outcome, Attempt.reason, fn.COUNT(Attempt.id))
                .join(Execution).where(Attempt.outcome.is_null(False))
                .group_by(Execution.service, Attempt.outcome, Attempt.reason).tuples())
        for service, outcome, reason, n in rows:
            counts[(service, attempt_reason(outcome, reason))] += n
        for (service, reason), n in sorted(counts.items()):
            ended.add_metric([service, reason], n)
        yield ended


def _count_by_service(where: Any) -> dict[str, int]:
    rows = Execution.select(Execution.service, fn.COUNT(Execution.id).alias("n")).where(where).group_by(Execution.service)
    return {row.service_id: row.n for row in rows}


def _histogram(name: str, documentation: str, value: Any, where: Any) -> HistogramMetricFamily:
    """A histogram per service of ``value`` over the executions matching ``where``: one query."""
    columns = [fn.SUM(Case(None, [(value <= bound, 1)], 0)).alias(f"le{i}") for i, bound in enumerate(DURATION_BUCKETS)]
    rows = (Execution.select(Execution.service, fn.COUNT(Execution.id).alias("n"), fn.SUM(value).alias("total"), *columns)
            .where(where).group_by(Execution.service).objects())
    family = HistogramMetricFamily(name, documentation, labels=["service"])
    for row in rows:
        buckets = [(repr(bound), float(getattr(row, f"le{i}") or 0)) for i, bound in enumerate(DURATION_BUCKETS)]
        family.add_metric([row.service_id], [*buckets, ("+Inf", float(row.n))], float(row.total or 0.0))
    return family

