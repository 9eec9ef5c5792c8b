"""How entities look in API responses."""
from __future__ import annotations

from typing import Any

from trainfaas.services.api import iso
from trainfaas.services.control import quotas, waiting
from trainfaas.services.control.services import describe_scaling, service_health
from trainfaas.services.control.tokens import Principal
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import LIVE_INSTANCE, WAITING_EXECUTION, ExecutionStatus
from trainfaas.services.store import queues
from trainfaas.services.store.records import (
    Artifact,
    Attempt,
    Blueprint,
    Execution,
    Instance,
    LogLine,
    MetricSample,
    Model,
    Project,
    Service,
    ServiceEvent,
    StatusLog,
    Token,
)


def model_view(model: Model) -> dict[str, Any]:
    return {
        "id": model.id, "project": model.project, "name": model.name, "architecture": model.architecture, "task": model.task,
        "labels": model.labels, "configuration": model.configuration, "status": model.status,
        "service": queues.service_name(model.architecture), "artifact_path": model.artifact_path,
        "metrics": model.metrics, "base_model": model.base_model, "cloned_from": model.cloned_from, "dataset": model.dataset,
        "source_execution": model.source_execution, "source_step": model.source_step,
        "imported_from": model.imported_from, "status_message": model.status_message,
        "created_at": iso(model.created_at), "updated_at": iso(model.updated_at),
    }


def execution_view(execution: Execution, detail: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": execution.id, "project": execution.project, "name": execution.name, "status": execution.status, "function": execution.function,
        "progress": round(execution.progress, 2), "message": execution.message, "attempt": execution.attempt,
        "max_attempts": execution.max_attempts, "timeout_s": execution.timeout_s, "drain_time_s": execution.drain_time_s,
        "on_reset": execution.on_reset, "run_as_process": execution.run_as_process, "service": execution.service_id,
        "model_id": execution.model_id, "stop_requested": execution.stop_requested, "removed": bool(execution.removed),
        "keep_checkpoints": execution.keep_checkpoints,
        "created_at": iso(execution.created_at), "started_at": iso(execution.started_at),
        "finished_at": iso(execution.finished_at), "duration_s": execution.duration_s, "error": execution.error,
    }
    if detail:
        view["input"] = execution.input
        view["output"] = execution.output
        view["traceback"] = execution.traceback
        view["status_log"] = [
            {"status": row.status, "at": iso(row.at), "message": row.message, "attempt": row.attempt, "instance": row.instance}
            for row in StatusLog.select().where(StatusLog.execution == execution.id).order_by(StatusLog.id)
        ]
        view["attempts"] = [
            {"number": row.number, "instance": row.instance, "started_at": iso(row.started_at), "ended_at": iso(row.ended_at),
             "outcome": row.outcome, "reason": row.reason, "usage": usage_view(row)}
            for row in Attempt.select().where(Attempt.execution == execution.id).order_by(Attempt.number)
        ]
    return view


def queued_view(execution: Execution) -> dict[str, Any]:
    """The answer to an enqueue: the execution just recorded, pending, as GET /executions/{id} shows it,
    built from what the enqueue wrote (its status log: created, queued; no attempt yet) without reading it back."""
    at = iso(execution.created_at)
    return {**execution_view(execution, detail=False), "input": execution.input, "output": None, "traceback": None, "attempts": [],
            "status_log": [{"status": status, "at": at, "message": message, "attempt": 1, "instance": None}
                           for status, message in (("created", "created"), ("pending", "queued"))]}


def usage_view(attempt: Attempt) -> dict[str, Any] | None:
    """What an attempt's work process used, or None where its instance did not measure it."""
    if attempt.usage_samples is None:
        return None
    return {"samples": attempt.usage_samples, "peak_rss_mb": attempt.peak_rss_mb, "mean_cpu_percent": attempt.mean_cpu_percent,
            "peak_gpu_mem_mb": attempt.peak_gpu_mem_mb, "mean_gpu_util": attempt.mean_gpu_util}


def waiting_view(settings: Settings, execution: Execution) -> dict[str, Any] | None:
    """Why a pending or rerun execution has not started (None for any other)."""
    view = waiting.waiting(settings, execution)
    if view is not None:
        view["estimated_start_at"] = iso(view["estimated_start_at"])
    return view


def service_view(service: Service, queue_depth: int | None = None) -> dict[str, Any]:
    fields = (
        "name", "architecture", "concurrency", "instance_type", "backend", "scaling_type", "min_instances",
        "max_instances", "queue_length", "polling_interval_s", "cooldown_s", "paused", "timeout_s",
        "drain_time_s", "on_reset", "max_attempts", "run_as_process",
    )
    view: dict[str, Any] = {name: getattr(service, name) for name in fields}
    executions = Execution.select().where(Execution.service == service.name)
    waiting = executions.where(Execution.status.in_(WAITING_EXECUTION)).count()
    running = executions.where(Execution.status == ExecutionStatus.IN_PROGRESS).count()
    live = list(Instance.select().where((Instance.service == service.name) & (Instance.status.in_(LIVE_INSTANCE))))
    health, reason = service_health(service.error_reason, service.paused, waiting, len(live), service.max_instances)
    view.update(
        queue=queue_depth, pending=waiting, running=running, instances=len(live),
        instance_statuses={status: sum(1 for i in live if i.status == status) for status in sorted({i.status for i in live})},
        health=health, health_reason=reason, scaling=describe_scaling(service),
        created_at=iso(service.created_at), updated_at=iso(service.updated_at),
    )
    return view


def event_view(event: ServiceEvent) -> dict[str, Any]:
    return {"id": event.id, "at": iso(event.at), "queued": event.queued, "running": event.running, "instances": event.instances,
            "desired": event.desired, "action": event.action, "reason": event.reason}


def instance_view(instance: Instance, principal: Principal | None = None) -> dict[str, Any]:
    """An instance as ``principal`` may see it: the executions it runs are listed by id only where
    they belong to the token's project (all of them for admin tokens, and for the instance itself:
    no principal); the others are only counted in ``other_running``."""
    running = list(instance.running or [])
    if principal is not None and principal.reach is not None and running:
        ids = [entry.get("execution_id") for entry in running]
        own = {row.id for row in Execution.select(Execution.id).where(Execution.id.in_(ids) & (Execution.project == principal.reach))}
        running = [entry for entry in running if entry.get("execution_id") in own]
    return {
        "id": instance.id, "service": instance.service_id, "backend": instance.backend, "status": instance.status,
        "host": instance.host, "pid": instance.pid, "heartbeat": iso(instance.heartbeat_at),
        "started_at": iso(instance.started_at), "ended_at": iso(instance.ended_at),
        "restart_count": instance.restart_count, "last_exit_reason": instance.last_exit_reason, "running": running,
        "other_running": len(instance.running or []) - len(running),
    }


def metric_view(row: MetricSample) -> dict[str, Any]:
    return {"figure": row.figure, "legend": row.legend, "x": row.x, "y": row.y, "attempt": row.attempt, "at": iso(row.at)}


def log_view(row: LogLine) -> dict[str, Any]:
    return {"id": row.id, "attempt": row.attempt, "at": iso(row.at), "line": row.line}


def artifact_view(row: Artifact) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "path": row.path, "step": row.step, "metrics": row.metrics,
            "attempt": row.attempt, "at": iso(row.at)}


def project_view(project: Project, settings: Settings) -> dict[str, Any]:
    return {"name": project.name, "description": project.description, "created_at": iso(project.created_at),
            "limits": quotas.limits_of(settings, project).view()}


def token_view(token: Token) -> dict[str, Any]:
    """A token without its secret (which is not stored)."""
    return {"id": token.id, "scope": token.scope, "project": token.project, "name": token.name,
            "created_at": iso(token.created_at), "revoked_at": iso(token.revoked_at)}


def blueprint_view(blueprint: Blueprint) -> dict[str, Any]:
    return {"name": blueprint.name, "project": blueprint.project, "description": blueprint.description, "built_in": False,
            "source_execution": blueprint.source_execution, "created_at": iso(blueprint.created_at),
            "architecture": blueprint.architecture, "dataset": blueprint.dataset, "configuration": blueprint.configuration,
            "execution": blueprint.execution}
