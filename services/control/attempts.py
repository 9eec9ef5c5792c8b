"""Attempts, as their instances run them: claim one, report how it ended; and reset one the
platform lost. (Their events: trainfaas.services.control.reports.)

An instance reaches only executions of its own service, and every write is fenced by attempt
number: a report or result of an attempt that is no longer current is refused, and so is one
from an instance other than the one that claimed the attempt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from trainfaas.services.control import dataset_rules, ids, models, quotas
from trainfaas.services.control import transitions as states
from trainfaas.services.control.executions import try_enqueue
from trainfaas.services.core.errors import ConfigError, Conflict, InstanceRetired, ServicePaused
from trainfaas.services.core.protocol import (
    ClaimReply,
    Finish,
    ModelRef,
    WorkSpec,
)
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import ExecutionStatus, InstanceStatus, Outcome
from trainfaas.services.store import queues
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Artifact, Attempt, Execution, Instance, Model, Service, StatusLog, prepared


def output_path(settings: Settings, execution_id: str, attempt: int) -> Path:
    return settings.executions_dir / execution_id / f"attempt-{attempt}"


def inside_attempt(settings: Settings, execution_id: str, attempt: int, path: Any, field: str) -> str:
    """``path`` if it names a place inside the attempt's own output directory (after following
    links and ``..``); else raise ConfigError naming ``field``. What an instance reports as a
    model or a checkpoint is later loaded by other trainings: it may name nothing else."""
    root = output_path(settings, execution_id, attempt)
    allowed = {field: f"an absolute path inside this attempt's output directory {root}"}
    if not isinstance(path, str) or not path or "\0" in path or not Path(path).is_absolute():
        raise ConfigError(f"{field} must be an absolute path inside {root}", allowed)
    try:
        Path(path).resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        raise ConfigError(f"{field} {path[:200]!r} is outside this attempt's output directory {root}", allowed) from None
    return path


def claimed_by(instance: Instance, execution_id: str, attempt: int) -> None:
    """Raise Conflict if ``attempt`` was claimed by another instance: only the instance that
    runs an attempt reports on it. (An attempt never claimed is left to the state machine,
    which refuses it as stale or not running.)"""
    claimed, holder = attempt_holder(execution_id, attempt)
    if claimed and holder != instance.id:
        raise Conflict(f"attempt {attempt} of execution {execution_id} runs on another instance, not {instance.id}",
                       {"attempt": "an attempt this instance claimed"})


def attempt_holder(execution_id: str, attempt: int) -> tuple[bool, str | None]:
    """(whether ``attempt`` of the execution was claimed, the instance that claimed it)."""
    sql, params = prepared("attempt holder", lambda execution, number: Attempt.select(Attempt.instance).where(
        (Attempt.execution == execution) & (Attempt.number == number)).limit(1), execution_id, attempt)
    row = database.execute_sql(sql, params).fetchone()
    return (True, row[0]) if row is not None else (False, None)


def last_checkpoint(execution_id: str, before_attempt: int, resume_from: str | None = None) -> Artifact | None:
    """The checkpoint attempt ``before_attempt`` resumes from. By default the newest checkpoint of
    the previous attempt, unless that attempt succeeded: a rerun of a finished training trains anew,
    a rerun of an interrupted one continues where it stopped. A rerun may ask for ``last`` (the
    newest checkpoint of any earlier attempt), ``best`` (the best one) or ``none``. A checkpoint whose
    files are gone is passed over for the newest one still there."""
    if resume_from == "none" or before_attempt <= 1:
        return None  # a first attempt has nothing earlier to resume from
    if resume_from is None:
        previous = Attempt.get_or_none((Attempt.execution == execution_id) & (Attempt.number == before_attempt - 1))
        if previous is None or previous.outcome == Outcome.SUCCESS:
            return None
    rows = Artifact.select().where((Artifact.execution == execution_id) & (Artifact.kind == "checkpoint")
                                   & (Artifact.attempt < before_attempt))
    if resume_from == "best":
        rows = rows.where(Artifact.is_best == True)  # noqa: E712 (SQL)
    # The newest whose files are still there: a trainer may have rotated away a reported checkpoint
    # in favour of a newer one that it could not report before the attempt died.
    ordered = rows.order_by(Artifact.attempt.desc(), Artifact.step.desc(), Artifact.id.desc())
    return next((row for row in ordered if Path(row.path).exists()), None)


def of_service(instance: Instance, execution_id: str) -> Execution:
    """The execution whose id is (or starts with) ``execution_id`` among those of the instance's
    service: an instance token reaches no other."""
    row = Execution.by_key(Execution.id, execution_id)  # the whole id, as instances send it: one prepared lookup
    if row is not None and row.service_id == instance.service_id:
        return row  # type: ignore[no-any-return]
    return ids.find(Execution, execution_id, "execution", Execution.service == instance.service_id)


def claim(settings: Settings, instance: Instance, execution_id: str, attempt: int) -> ClaimReply:
    """Start ``attempt`` on ``instance`` and return what to run. Raises if it is not claimable:
    ServicePaused, ProjectAtRunningLimit (its project runs its most executions: it stays pending,
    its message says why), or the state machine's refusals."""
    execution = of_service(instance, execution_id)
    service = Service.by_key(Service.name, execution.service_id)
    if service is not None and service.paused:
        raise ServicePaused(f"service {instance.service_id} is paused; execution {execution.id} stays queued")
    retired = _retired(instance, service)
    if retired:
        raise InstanceRetired(f"instance {instance.id} {retired}: it starts nothing more; execution {execution.id} stays queued")
    checkpoint = last_checkpoint(execution.id, attempt, execution.resume_from)

    def started(claimed: Execution) -> None:
        models.follow(claimed)
        if checkpoint is not None:
            StatusLog.create(execution=claimed.id, status=ExecutionStatus.IN_PROGRESS, attempt=attempt, instance=instance.id,
                             message=f"resuming from checkpoint at step {checkpoint.step} of attempt {checkpoint.attempt}: {checkpoint.path}")

    with quotas.locked(execution.project):  # the count and the claim commit together: no overshoot
        waiting = quotas.running_limit_reached(settings, execution, attempt)
        if waiting is None:
            execution = states.claim(execution.id, attempt, instance.id, then=started)
    if waiting is not None:
        quotas.hold(execution, waiting)
    return ClaimReply(spec=work_spec(settings, execution, checkpoint), timeout_s=execution.timeout_s,
                      drain_time_s=execution.drain_time_s, run_as_process=execution.run_as_process, project=execution.project)


def _retired(instance: Instance, service: Service | None) -> str:
    """Why ``instance`` may start no execution (it is stopping, or its service moved to another
    backend or instance type, whose instances replace it), or ""."""
    if instance.status == InstanceStatus.TERMINATING:
        return "is stopping"
    if service is not None and instance.backend != service.backend:
        return f"runs on {instance.backend}, its service now on {service.backend}"
    if service is not None and instance.instance_type is not None and instance.instance_type != service.instance_type:
        return f"is of instance type {instance.instance_type}, its service now of {service.instance_type}"
    return ""


def work_spec(settings: Settings, execution: Execution, checkpoint: Artifact | None) -> WorkSpec:
    """What the work process of the execution's current attempt runs."""
    model = execution.model if execution.model_id else None
    base = Model.get_or_none(Model.id == model.base_model) if model is not None and model.base_model else None
    return WorkSpec(
        execution_id=execution.id, attempt=execution.attempt, function=execution.function, input=_with_manifests(execution.input),
        output_path=str(output_path(settings, execution.id, execution.attempt)), data_path=execution.input.get("dataset"),
        model=ModelRef(id=model.id, architecture=model.architecture, labels=model.labels) if model is not None else None,
        resume_checkpoint=checkpoint.path if checkpoint is not None else None,
        base_model=base.artifact_path if base is not None and base.artifact_path else None, adapters=settings.adapters,
        warm=not execution.run_as_process,
    )


def _with_manifests(given: dict[str, Any]) -> dict[str, Any]:
    """A training's input plus the manifests of the data set versions it reads (checked before its adapter reads)."""
    found = dataset_rules.manifests(given or {})
    return {**given, "dataset_manifests": found} if found else given


def finish(connection: redis.Redis, settings: Settings, instance: Instance, execution_id: str, report: Finish,
           holder_checked: bool = False, ring: bool = True) -> Execution:
    """An instance reports how an attempt ended. Fenced: a stale attempt's report raises, another
    instance's attempt is a conflict, an execution of another service is not found (an instance
    token reaches only its own service), and a model saved outside the attempt's own output
    directory is refused (422 naming ``output.model_path``). ``holder_checked``: the caller has just
    checked that ``instance`` claimed the attempt (see reports.finish_with_events). ``ring``: tell the
    scheduler (see queues.ring); False when the caller does, once for several."""
    execution = of_service(instance, execution_id)
    if not holder_checked:
        claimed_by(instance, execution.id, report.attempt)
    if report.output is not None and "model_path" in report.output:
        inside_attempt(settings, execution.id, report.attempt, report.output["model_path"], "output.model_path")
    ended = _end(connection, instance, execution, report)
    if ring:
        ring_doorbell(connection, execution.service_id)  # the scheduler sizes the service now: one fewer runs
    return ended


def ring_doorbell(connection: redis.Redis, service: str) -> None:
    """queues.ring, if Redis answers: else the scheduler sizes the service at its next polling interval anyway."""
    try:
        queues.ring(connection, service)
    except redis.RedisError:
        pass


def _end(connection: redis.Redis, instance: Instance, execution: Execution, report: Finish) -> Execution:
    """Close the attempt as ``report`` says it ended, keeping what its work process used with it."""
    used = report.usage
    usage = None if used is None else {"peak_rss_mb": used.peak_rss_mb, "mean_cpu_percent": used.mean_cpu_percent,
                                       "peak_gpu_mem_mb": used.peak_gpu_mem_mb, "mean_gpu_util": used.mean_gpu_util,
                                       "usage_samples": used.samples}
    if report.outcome == Outcome.RESET:
        return reset(connection, execution.id, report.attempt, report.reason, instance=instance.id, usage=usage)
    if report.outcome == Outcome.SUCCESS:
        return states.finish(execution.id, report.attempt, ExecutionStatus.SUCCESS, report.reason or "succeeded",
                             instance=instance.id, then=models.follow, usage=usage, output=report.output, progress=100.0)
    if report.outcome == Outcome.TERMINATED:
        return states.finish(execution.id, report.attempt, ExecutionStatus.TERMINATED, report.reason or "stopped by user",
                             instance=instance.id, then=models.follow, usage=usage, output=report.output)
    return states.finish(execution.id, report.attempt, ExecutionStatus.FAILED, report.reason or "failed", instance=instance.id,
                         then=models.follow, usage=usage, error=report.error or report.reason, traceback=report.traceback)


def reset(connection: redis.Redis, execution_id: str, attempt: int, reason: str, instance: str | None = None,
          usage: dict[str, Any] | None = None) -> Execution:
    """Reset an attempt (rerun or abort per its settings, see states.reset) and queue the rerun."""
    execution = states.reset(execution_id, attempt, reason, instance=instance, then=models.follow, usage=usage)
    if execution.status == ExecutionStatus.RERUN:
        try_enqueue(connection, execution)
    return execution
