"""Executions: list, show, terminate, rerun, metrics, logs, artifacts; and the generic enqueue."""
from __future__ import annotations

from typing import Any

from flask import Blueprint
from trainfaas.services.api import page, paginate, redis_connection, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import (
    ArtifactOut,
    ExecutionOut,
    ExecutionQuery,
    ExecutionSummary,
    FunctionRequest,
    ListQuery,
    LogOut,
    LogQuery,
    MetricOut,
    Page,
)
from trainfaas.services.api.views import artifact_view, execution_view, log_view, metric_view
from trainfaas.services.control import operations as control
from trainfaas.services.control.tokens import Principal
from trainfaas.services.core.errors import NotFound
from trainfaas.services.store.records import Artifact, Execution, LogLine, MetricSample

bp = Blueprint("executions", __name__, url_prefix="/api/v1")


def visible_execution(principal: Principal, execution_id: str) -> Execution:
    """The execution, if the caller's token reaches its project; NotFound either way otherwise."""
    execution = control.get_execution(execution_id)
    if not principal.sees(execution.project):
        raise NotFound(f"execution {execution_id} does not exist")
    return execution


@endpoint(bp, "POST", "/services/<name>/executions", body=FunctionRequest, response=ExecutionOut, status=202, access="write")
def enqueue(name: str, body: FunctionRequest, principal: Principal) -> dict[str, Any]:
    """Run a function (train_model, noop) on a service's instances."""
    service = control.get_service(name)
    project = principal.project_for_new(body.project)
    if body.function == "train_model":
        # The training belongs to its model's project, which the caller must reach.
        from trainfaas.services.api.models import visible_model

        visible_model(principal, str(body.input.get("model_id", "")))
    execution = control.submit_function(settings(), redis_connection(), service, body.function, body.input, body.execution, project)
    return execution_view(execution)


@endpoint(bp, "GET", "/executions", query=ExecutionQuery, response=Page[ExecutionSummary])
def index(query: ExecutionQuery, principal: Principal) -> dict[str, Any]:
    """List executions, newest first."""
    rows = Execution.select()
    if not principal.is_admin:
        rows = rows.where(Execution.project == principal.project)
    if query.project:
        rows = rows.where(Execution.project == query.project)
    if query.status:
        rows = rows.where(Execution.status.in_(query.status.split(",")))
    if query.service:
        rows = rows.where(Execution.service == query.service)
    if query.model:
        rows = rows.where(Execution.model == query.model)
    if query.created_after is not None:
        rows = rows.where(Execution.created_at > query.created_after)
    if query.created_before is not None:
        rows = rows.where(Execution.created_at < query.created_before)
    if query.q:
        rows = rows.where((Execution.name.contains(query.q)) | (Execution.id == query.q))
    items, cursor = paginate(rows, (Execution.created_at, Execution.id), query.limit, query.cursor)
    return page(items, cursor, lambda e: execution_view(e, detail=False))


@endpoint(bp, "GET", "/executions/<execution_id>", response=ExecutionOut)
def show(execution_id: str, principal: Principal) -> dict[str, Any]:
    """One execution with its status log and attempts."""
    return execution_view(visible_execution(principal, execution_id))


@endpoint(bp, "POST", "/executions/<execution_id>/terminate", response=ExecutionOut, status=202, access="write", errors=(409,))
def terminate(execution_id: str, principal: Principal) -> dict[str, Any]:
    """Stop an execution: at once if it has not started, else at its next step (it saves a checkpoint)."""
    visible_execution(principal, execution_id)
    return execution_view(control.terminate(execution_id))


@endpoint(bp, "POST", "/executions/<execution_id>/rerun", response=ExecutionOut, status=202, access="write", errors=(409,))
def rerun(execution_id: str, principal: Principal) -> dict[str, Any]:
    """Queue an ended execution again as a new attempt."""
    visible_execution(principal, execution_id)
    return execution_view(control.rerun(redis_connection(), execution_id))


@endpoint(bp, "GET", "/executions/<execution_id>/metrics", query=ListQuery, response=Page[MetricOut])
def metrics(execution_id: str, query: ListQuery, principal: Principal) -> dict[str, Any]:
    """Metric samples in the order they were reported."""
    visible_execution(principal, execution_id)
    rows = MetricSample.select().where(MetricSample.execution == execution_id)
    items, cursor = paginate(rows, (MetricSample.id,), query.limit, query.cursor, descending=False)
    return page(items, cursor, metric_view)


@endpoint(bp, "GET", "/executions/<execution_id>/logs", query=LogQuery, response=Page[LogOut])
def logs(execution_id: str, query: LogQuery, principal: Principal) -> dict[str, Any]:
    """Log lines in order; ``after`` (a line id) follows a running execution."""
    visible_execution(principal, execution_id)
    rows = LogLine.select().where((LogLine.execution == execution_id) & (LogLine.id > query.after))
    items, cursor = paginate(rows, (LogLine.id,), query.limit, query.cursor, descending=False)
    return page(items, cursor, log_view)


@endpoint(bp, "GET", "/executions/<execution_id>/artifacts", query=ListQuery, response=Page[ArtifactOut])
def artifacts(execution_id: str, query: ListQuery, principal: Principal) -> dict[str, Any]:
    """Checkpoints and the saved model, in the order they were written."""
    visible_execution(principal, execution_id)
    rows = Artifact.select().where(Artifact.execution == execution_id)
    items, cursor = paginate(rows, (Artifact.id,), query.limit, query.cursor, descending=False)
    return page(items, cursor, artifact_view)
