"""Attempts, as their instances run them: claim one, report its events, report how it ended;
and reset one the platform lost.

An instance reaches only executions of its own service, and every write is fenced by attempt
number: a report or result of an attempt that is no longer current is refused.
"""
from __future__ import annotations

import logging
from pathlib import Path

import redis

from trainfaas.services.control import ids, models
from trainfaas.services.control import transitions as states
from trainfaas.services.control.executions import try_enqueue
from trainfaas.services.core.errors import InvalidTransition, NotFound, ServicePaused, StaleAttempt
from trainfaas.services.core.protocol import (
    Checkpoint,
    ClaimReply,
    Finish,
    Log,
    Metric,
    ModelRef,
    Progress,
    ReportedEvent,
    WorkSpec,
)
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import ExecutionStatus, Outcome
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Artifact, Attempt, Execution, Instance, LogLine, MetricSample, Model, StatusLog

log = logging.getLogger("trainfaas.attempts")

PROGRESS_MESSAGE_CHARS = 2000
LOG_LINE_CHARS = 10000


def output_path(settings: Settings, execution_id: str, attempt: int) -> Path:
    return settings.executions_dir / execution_id / f"attempt-{attempt}"


def last_checkpoint(execution_id: str, before_attempt: int) -> Artifact | None:
    """The newest checkpoint of the previous attempt, unless that attempt succeeded: a rerun of a
    finished training trains anew, a rerun of an interrupted one continues where it stopped."""
    previous = Attempt.get_or_none((Attempt.execution == execution_id) & (Attempt.number == before_attempt - 1))
    if previous is None or previous.outcome == Outcome.SUCCESS:
        return None
    row = (Artifact.select().where((Artifact.execution == execution_id) & (Artifact.kind == "checkpoint")
                                   & (Artifact.attempt < before_attempt))
           .order_by(Artifact.attempt.desc(), Artifact.step.desc(), Artifact.id.desc()).first())
    return row if row and Path(row.path).exists() else None


def of_service(instance: Instance, execution_id: str) -> Execution:
    """The execution whose id is (or starts with) ``execution_id`` among those of the instance's
    service: an instance token reaches no other."""
    return ids.find(Execution, execution_id, "execution", Execution.service == instance.service_id)


def claim(settings: Settings, instance: Instance, execution_id: str, attempt: int) -> ClaimReply:
    """Start ``attempt`` on ``instance`` and return what to run. Raises if it is not claimable."""
    execution = of_service(instance, execution_id)
    if execution.service.paused:
        raise ServicePaused(f"service {instance.service_id} is paused; execution {execution.id} stays queued")
    checkpoint = last_checkpoint(execution.id, attempt)

    def started(claimed: Execution) -> None:
        models.follow(claimed)
        if checkpoint is not None:
            StatusLog.create(execution=claimed.id, status=ExecutionStatus.IN_PROGRESS, attempt=attempt, instance=instance.id,
                             message=f"resuming from checkpoint at step {checkpoint.step} of attempt {checkpoint.attempt}: {checkpoint.path}")

    execution = states.claim(execution.id, attempt, instance.id, then=started)
    return ClaimReply(spec=work_spec(settings, execution, checkpoint), timeout_s=execution.timeout_s,
                      drain_time_s=execution.drain_time_s, run_as_process=execution.run_as_process)


def work_spec(settings: Settings, execution: Execution, checkpoint: Artifact | None) -> WorkSpec:
    """What the work process of the execution's current attempt runs."""
    model = execution.model if execution.model_id else None
    base = Model.get_or_none(Model.id == model.base_model) if model is not None and model.base_model else None
    return WorkSpec(
        execution_id=execution.id, attempt=execution.attempt, function=execution.function, input=execution.input,
        output_path=str(output_path(settings, execution.id, execution.attempt)), data_path=execution.input.get("dataset"),
        model=ModelRef(id=model.id, architecture=model.architecture, labels=model.labels) if model is not None else None,
        resume_checkpoint=checkpoint.path if checkpoint is not None else None,
        base_model=base.artifact_path if base is not None and base.artifact_path else None, adapters=settings.adapters,
    )


def record_events(instance: Instance, events: list[ReportedEvent]) -> dict[str, str]:
    """Store progress, metrics, logs and checkpoints; events of stale attempts are dropped.

    Returns {execution_id: why} for each execution whose events were refused, so the instance
    can stop work that is no longer its own.
    """
    refused: dict[str, str] = {}
    current: dict[tuple[str, int], bool] = {}
    with database.atomic():
        for reported in events:
            key = (reported.execution_id, reported.attempt)
            if key not in current:
                current[key] = _owns(instance, reported.execution_id, reported.attempt, refused)
            if current[key]:
                _store(reported)
    return refused


def _owns(instance: Instance, execution_id: str, attempt: int, refused: dict[str, str]) -> bool:
    running = Attempt.get_or_none((Attempt.execution == execution_id) & (Attempt.number == attempt))
    try:
        states.check_current(execution_id, attempt)
    except (StaleAttempt, NotFound, InvalidTransition) as exc:
        refused[execution_id] = exc.message
        return False
    if running is None or running.instance != instance.id:
        refused[execution_id] = f"attempt {attempt} does not run on instance {instance.id}"
        return False
    return True


def _store(reported: ReportedEvent) -> None:
    execution, attempt, at, event = reported.execution_id, reported.attempt, reported.at, reported.event
    if isinstance(event, Progress):
        Execution.update(progress=event.percent, message=event.message[:PROGRESS_MESSAGE_CHARS]).where(Execution.id == execution).execute()
    elif isinstance(event, Metric) and not event.is_finite:
        # A chart cannot draw NaN or infinity (a diverged loss): the sample is left out.
        log.warning("execution %s attempt %s: metric %s/%s sample (%s, %s) is not a finite number; dropped",
                    execution, attempt, event.figure, event.legend, event.x, event.y)
    elif isinstance(event, Metric):
        MetricSample.create(execution=execution, attempt=attempt, figure=event.figure, legend=event.legend, x=event.x, y=event.y, at=at)
    elif isinstance(event, Log):
        LogLine.create(execution=execution, attempt=attempt, line=event.line[:LOG_LINE_CHARS], at=at)
    elif isinstance(event, Checkpoint):
        Artifact.create(execution=execution, attempt=attempt, kind="checkpoint", path=event.path, step=event.step,
                        metrics=event.metrics, at=at)


def finish(connection: redis.Redis, instance: Instance, execution_id: str, report: Finish) -> Execution:
    """An instance reports how an attempt ended. Fenced: a stale attempt's report raises, and an
    execution of another service is not found (an instance token reaches only its own service)."""
    execution = of_service(instance, execution_id)
    if report.outcome == Outcome.RESET:
        return reset(connection, execution.id, report.attempt, report.reason, instance=instance.id)
    if report.outcome == Outcome.SUCCESS:
        return states.finish(execution.id, report.attempt, ExecutionStatus.SUCCESS, report.reason or "succeeded",
                             instance=instance.id, then=models.follow, output=report.output, progress=100.0)
    if report.outcome == Outcome.TERMINATED:
        return states.finish(execution.id, report.attempt, ExecutionStatus.TERMINATED, report.reason or "stopped by user",
                             instance=instance.id, then=models.follow, output=report.output)
    return states.finish(execution.id, report.attempt, ExecutionStatus.FAILED, report.reason or "failed", instance=instance.id,
                         then=models.follow, error=report.error or report.reason, traceback=report.traceback)


def reset(connection: redis.Redis, execution_id: str, attempt: int, reason: str, instance: str | None = None) -> Execution:
    """Reset an attempt (rerun or abort per its settings, see states.reset) and queue the rerun."""
    execution = states.reset(execution_id, attempt, reason, instance=instance, then=models.follow)
    if execution.status == ExecutionStatus.RERUN:
        try_enqueue(connection, execution)
    return execution
