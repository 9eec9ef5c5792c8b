"""What instances report while their attempts run: progress, metrics, logs and checkpoints.

Every event is checked on its own: a malformed one, one of an attempt that is not this
instance's current one, or a checkpoint outside its attempt's output directory is refused by
itself and the rest of the batch is stored. Each attempt keeps at most the configured number of
log lines, bytes of log text and metric samples; past a cap, further ones are dropped and one
log line says so.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import peewee
import redis
from pydantic import ValidationError

from trainfaas.services.control import checkpoints
from trainfaas.services.control import transitions as states
from trainfaas.services.control.attempts import attempt_holder, finish, inside_attempt
from trainfaas.services.core.errors import ConfigError, InvalidTransition, NotFound, StaleAttempt
from trainfaas.services.core.protocol import Checkpoint, Finish, Log, Metric, Progress, RefusedEvent, ReportedEvent, ReportReply
from trainfaas.services.core.settings import Settings
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Execution, Instance, LogLine, MetricSample, prepared

PROGRESS_MESSAGE_CHARS = 2000
LOG_LINE_CHARS = 10000

log = logging.getLogger("trainfaas.reports")


def log_cap_note(settings: Settings) -> str:
    return (f"trainfaas: this attempt reached its log cap ({settings.max_log_lines} lines or {settings.max_log_chars}"
            " characters of text); its later log lines are dropped")


def metric_cap_note(settings: Settings) -> str:
    return f"trainfaas: this attempt reached its metric cap ({settings.max_metric_samples} samples); its later samples are dropped"


@dataclass
class _Budget:
    """What an attempt may still store, counted once per batch."""

    lines: int
    log_chars: int
    samples: int
    log_noted: bool
    metric_noted: bool

    @classmethod
    def of(cls, settings: Settings, execution_id: str, attempt: int) -> _Budget:
        log_note, metric_note = log_cap_note(settings), metric_cap_note(settings)

        sql, params = prepared("attempt budget", _budget_query, execution_id, attempt, log_note, metric_note)
        lines, size, logs_noted, metrics_noted, samples = database.execute_sql(sql, params).fetchone()
        return cls(settings.max_log_lines - int(lines), settings.max_log_chars - int(size or 0),
                   settings.max_metric_samples - int(samples), int(logs_noted) > 0, int(metrics_noted) > 0)


def _budget_query(execution: Any, attempt: Any, log_note: Any, metric_note: Any) -> peewee.Query:
    """What an attempt stored so far, in one statement: its log lines, their characters, whether each
    cap's note is among them (one pass over them), and its metric samples."""
    def noted(note: Any) -> peewee.Node:
        return peewee.fn.COALESCE(peewee.fn.SUM(peewee.Case(None, [(LogLine.line == note, 1)], 0)), 0)
    samples = MetricSample.select(peewee.fn.COUNT(MetricSample.id)).where((MetricSample.execution == execution) & (MetricSample.attempt == attempt))
    return LogLine.select(peewee.fn.COUNT(LogLine.id), peewee.fn.COALESCE(peewee.fn.SUM(peewee.fn.LENGTH(LogLine.line)), 0),
                          noted(log_note), noted(metric_note), samples).where((LogLine.execution == execution) & (LogLine.attempt == attempt))


def finish_with_events(connection: redis.Redis, settings: Settings, instance: Instance, execution_id: str, report: Finish,
                       ring: bool = True) -> Execution:
    """attempts.finish, after storing the finish's ``events`` as a report's (see :func:`record_events`);
    events of another attempt than the one that ends are left out."""
    own = [raw for raw in report.events if raw.get("execution_id") == execution_id and raw.get("attempt") == report.attempt]
    # Storing them checked that this instance claimed the attempt, unless they were refused.
    owned = bool(own) and execution_id not in record_events(settings, instance, own).refused
    return finish(connection, settings, instance, execution_id, report, holder_checked=owned, ring=ring)


def record_events(settings: Settings, instance: Instance, events: list[dict[str, Any]]) -> ReportReply:
    """Store what can be stored; the reply names the executions whose attempts are no longer
    this instance's (``refused``: stop that work) and each event refused by itself (``rejected``)."""
    refused: dict[str, str] = {}
    rejected: list[RefusedEvent] = []
    owned: dict[tuple[str, int], bool] = {}
    budgets: dict[tuple[str, int], _Budget] = {}
    with database.atomic():
        for index, raw in enumerate(events):
            try:
                reported = ReportedEvent.model_validate(raw)
            except ValidationError as exc:
                rejected.append(RefusedEvent(index=index, why=_why(exc)))
                continue
            key = (reported.execution_id, reported.attempt)
            if key not in owned:
                owned[key] = _owns(instance, reported.execution_id, reported.attempt, refused)
            if not owned[key]:
                continue
            try:
                if isinstance(reported.event, Checkpoint):
                    inside_attempt(settings, *key, reported.event.path, "event.path")
            except ConfigError as exc:
                rejected.append(RefusedEvent(index=index, why=exc.message))
                continue
            if key not in budgets:
                budgets[key] = _Budget.of(settings, *key)
            _store(settings, reported, budgets[key])
    return ReportReply(refused=refused, rejected=rejected)


def _why(exc: ValidationError) -> str:
    errors = exc.errors()[:3]
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'event'}: {error['msg']}" for error in errors)[:1000]


def _owns(instance: Instance, execution_id: str, attempt: int, refused: dict[str, str]) -> bool:
    claimed, holder = attempt_holder(execution_id, attempt)
    try:
        states.check_current(execution_id, attempt)
    except (StaleAttempt, NotFound, InvalidTransition) as exc:
        refused[execution_id] = exc.message
        return False
    if not claimed or holder != instance.id:
        refused[execution_id] = f"attempt {attempt} does not run on instance {instance.id}"
        return False
    return True


def _note(reported: ReportedEvent, line: str) -> None:
    LogLine.create(execution=reported.execution_id, attempt=reported.attempt, line=line, at=reported.at)


def _store(settings: Settings, reported: ReportedEvent, budget: _Budget) -> None:
    execution, attempt, at, event = reported.execution_id, reported.attempt, reported.at, reported.event
    if isinstance(event, Progress):
        Execution.update(progress=event.percent, message=event.message[:PROGRESS_MESSAGE_CHARS]).where(Execution.id == execution).execute()
    elif isinstance(event, Metric) and not event.is_finite:
        # A chart cannot draw NaN or infinity (a diverged loss): the sample is left out.
        log.warning("execution %s attempt %s: metric %s/%s sample (%s, %s) is not a finite number; dropped",
                    execution, attempt, event.figure, event.legend, event.x, event.y)
    elif isinstance(event, Metric):
        if budget.samples > 0:
            budget.samples -= 1
            MetricSample.create(execution=execution, attempt=attempt, figure=event.figure, legend=event.legend, x=event.x, y=event.y, at=at)
        elif not budget.metric_noted:
            budget.metric_noted = True
            _note(reported, metric_cap_note(settings))
    elif isinstance(event, Log):
        line = event.line[:LOG_LINE_CHARS]
        if not budget.log_noted and budget.lines > 0 and budget.log_chars >= len(line):
            budget.lines, budget.log_chars = budget.lines - 1, budget.log_chars - len(line)
            LogLine.create(execution=execution, attempt=attempt, line=line, at=at)
        elif not budget.log_noted:
            budget.log_noted = True
            _note(reported, log_cap_note(settings))
    elif isinstance(event, Checkpoint):
        checkpoints.record(settings, execution, attempt, event, at)
