"""Executions: list, show, terminate, rerun, metrics, logs; and the generic enqueue."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from services import control
from services.api import body, int_arg, iso, page, redis_connection, settings
from services.api.views import execution_view
from services.errors import ConfigError
from services.models import STATUSES, Artifact, Execution, LogLine, MetricSample
from services.schemas import FunctionRequest

bp = Blueprint("executions", __name__, url_prefix="/api/v1")


@bp.post("/services/<name>/executions")
def enqueue(name: str) -> tuple[dict[str, Any], int]:
    service = control.get_service(name)
    data = body(FunctionRequest)
    execution = control.submit_function(settings(), redis_connection(), service, data.function, data.input, data.execution)
    return execution_view(execution), 202


@bp.get("/executions")
def index() -> dict[str, Any]:
    limit, offset = int_arg("limit", 50, 1, 1000), int_arg("offset", 0, 0, 10**9)
    query = Execution.select().order_by(Execution.created_at.desc(), Execution.id)
    if status := request.args.get("status"):
        wanted = status.split(",")
        if bad := [s for s in wanted if s not in STATUSES]:
            raise ConfigError(f"unknown status {bad[0]!r}", {"status": f"one or more of: {', '.join(STATUSES)}"})
        query = query.where(Execution.status.in_(wanted))
    if service := request.args.get("service"):
        query = query.where(Execution.service == service)
    if model := request.args.get("model"):
        query = query.where(Execution.model == model)
    if q := request.args.get("q"):
        query = query.where((Execution.name.contains(q)) | (Execution.id == q))
    items = [execution_view(e, detail=False) for e in query.limit(limit).offset(offset)]
    return page(items, limit, offset, query.count())


@bp.get("/executions/<execution_id>")
def show(execution_id: str) -> dict[str, Any]:
    return execution_view(control.get_execution(execution_id))


@bp.post("/executions/<execution_id>/terminate")
def terminate(execution_id: str) -> tuple[dict[str, Any], int]:
    return execution_view(control.terminate(execution_id)), 202


@bp.post("/executions/<execution_id>/rerun")
def rerun(execution_id: str) -> tuple[dict[str, Any], int]:
    return execution_view(control.rerun(redis_connection(), execution_id)), 202


@bp.get("/executions/<execution_id>/metrics")
def metrics(execution_id: str) -> dict[str, Any]:
    control.get_execution(execution_id)
    rows = MetricSample.select().where(MetricSample.execution == execution_id).order_by(MetricSample.id)
    samples = [{"figure": r.figure, "legend": r.legend, "x": r.x, "y": r.y, "attempt": r.attempt, "at": iso(r.at)} for r in rows]
    return {"items": samples}


@bp.get("/executions/<execution_id>/logs")
def logs(execution_id: str) -> dict[str, Any]:
    control.get_execution(execution_id)
    after = int_arg("after", 0, 0, 2**62)
    limit = int_arg("limit", 1000, 1, 10000)
    rows = LogLine.select().where((LogLine.execution == execution_id) & (LogLine.id > after)).order_by(LogLine.id).limit(limit)
    return {"items": [{"id": r.id, "attempt": r.attempt, "at": iso(r.at), "line": r.line} for r in rows]}


@bp.get("/executions/<execution_id>/artifacts")
def artifacts(execution_id: str) -> dict[str, Any]:
    control.get_execution(execution_id)
    rows = Artifact.select().where(Artifact.execution == execution_id).order_by(Artifact.id)
    return {"items": [{"kind": r.kind, "path": r.path, "step": r.step, "metrics": r.metrics, "attempt": r.attempt, "at": iso(r.at)} for r in rows]}
