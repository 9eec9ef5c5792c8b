"""Executions: list, show, terminate, rerun, metrics, logs, artifacts; and the generic enqueue.

An execution id in a path may be any unique prefix of it (4 characters at least), among the
executions the token reaches."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import peewee
from flask import Blueprint
from pydantic import ValidationError

from trainfaas.services.api import page, paginate, reachable, redis_connection, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import (
    ArtifactOut,
    BatchOut,
    BatchRequest,
    ExecutionOut,
    ExecutionQuery,
    ExecutionSummary,
    FunctionRequest,
    ListQuery,
    LogOut,
    LogQuery,
    MetricOut,
    Page,
    TrainInput,
)
from trainfaas.services.api.views import artifact_view, execution_view, log_view, metric_view, queued_view, waiting_view
from trainfaas.services.control import deletion
from trainfaas.services.control import executions as control
from trainfaas.services.control.configuration import pydantic_fields
from trainfaas.services.control.models import get_model
from trainfaas.services.control.services import get_service
from trainfaas.services.control.tokens import Principal
from trainfaas.services.core.errors import ConfigError, TrainfaasError
from trainfaas.services.core.protocol import TRAIN_MODEL
from trainfaas.services.store.records import Artifact, Execution, LogLine, MetricSample, Service

bp = Blueprint("executions", __name__, url_prefix="/api/v1")


@endpoint(bp, "POST", "/services/<name>/executions", body=FunctionRequest, response=ExecutionOut, status=202, access="write",
          errors=(409, 429), links={"id": "/executions/{execution_id}"})
def enqueue(name: str, body: FunctionRequest, principal: Principal) -> dict[str, Any]:
    """Run a function (train_model, noop) on a service's instances; 429 while the project is at its queued limit."""
    service = get_service(name)
    project = principal.project_for_new(body.project)
    with _input_fields(body.function):
        execution = control.submit_many(settings(), redis_connection(), [_submission(service, body, project, principal)])[0]
    return queued_view(execution)


@endpoint(bp, "POST", "/services/<name>/executions/batch", body=BatchRequest, response=BatchOut, status=202, access="write",
          errors=(409, 429))
def enqueue_batch(name: str, body: BatchRequest, principal: Principal) -> dict[str, Any]:
    """Run up to 1,000 functions on a service's instances at once, all or nothing: each item is checked as
    one enqueue is, and an invalid one is a 422 naming ``executions.<index>.<field>``, with nothing recorded
    or queued; 429 when the batch as a whole would take a project past its queued limit."""
    service = get_service(name)
    projects: dict[str | None, str] = {}
    submissions = []
    for index, item in enumerate(body.executions):
        with control.naming(index), _input_fields(item.function):
            if item.project not in projects:
                projects[item.project] = principal.project_for_new(item.project)
            submissions.append(_submission(service, item, projects[item.project], principal))
    executions = control.submit_many(settings(), redis_connection(), submissions, batch=True)
    return {"ids": [execution.id for execution in executions], "count": len(executions), "service": service.name}


def _submission(service: Service, body: FunctionRequest, project: str, principal: Principal) -> control.Submission:
    """One enqueue's request checked (see control.prepare_function); a training is checked as
    POST /models/{id}/train checks it and belongs to its model's project, which the caller must reach."""
    given = dict(body.input)
    if body.function == TRAIN_MODEL:
        try:
            given = TrainInput.model_validate(given).model_dump(exclude_none=True)
        except ValidationError as exc:
            raise ConfigError("invalid input for train_model", pydantic_fields(exc, "input")) from None
        given["model_id"] = get_model(given["model_id"], principal.reach).id
    return control.prepare_function(settings(), service, body.function, given, body.execution, project)


@contextlib.contextmanager
def _input_fields(function: str) -> Iterator[None]:
    """The train request's checks name its fields: in an enqueue they lie in input."""
    try:
        yield
    except TrainfaasError as exc:
        if function == TRAIN_MODEL:
            exc.fields = {_in_input(key): value for key, value in exc.fields.items()}
        raise


def _in_input(field: str) -> str:
    return f"input.{field}" if field.split(".")[0] in ("dataset", "configuration") else field


@endpoint(bp, "GET", "/executions", query=ExecutionQuery, response=Page[ExecutionSummary])
def index(query: ExecutionQuery, principal: Principal) -> dict[str, Any]:
    """List executions, newest first."""
    rows = reachable(Execution.select(), Execution.project, principal, query.project)
    if not query.include_removed:
        rows = rows.where(Execution.removed.is_null() | (Execution.removed == False))  # noqa: E712 (SQL)
    for field, value in ((Execution.service, query.service), (Execution.model, query.model)):
        if value:
            rows = rows.where(field == value)
    if query.status:
        rows = rows.where(Execution.status.in_(query.status.split(",")))
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
    """One execution with its status log and attempts (each with what it used); one that waits
    (pending or rerun) says why in ``waiting``: its place in its service's queue, what holds it and when it may start."""
    execution = control.get_execution(execution_id, principal.reach)
    return {**execution_view(execution), "waiting": waiting_view(settings(), execution)}


@endpoint(bp, "POST", "/executions/<execution_id>/terminate", response=ExecutionOut, status=202, access="write", errors=(409,),
          links={"id": "/executions/{execution_id}"})
def terminate(execution_id: str, principal: Principal) -> dict[str, Any]:
    """Stop an execution: at once if it has not started, else at its next step (it saves a checkpoint)."""
    return execution_view(control.terminate(control.get_execution(execution_id, principal.reach).id))


@endpoint(bp, "POST", "/executions/<execution_id>/rerun", body=control.RerunChanges, response=ExecutionOut, status=202,
          access="write", errors=(409, 429), links={"id": "/executions/{execution_id}"}, body_optional=True)
def rerun(execution_id: str, body: control.RerunChanges, principal: Principal) -> dict[str, Any]:
    """Queue an ended execution again as a new attempt, optionally with changed options and settings and
    from a chosen checkpoint (the body may be left out); 429 while its project is at its queued limit."""
    execution = control.get_execution(execution_id, principal.reach)
    return execution_view(control.rerun(settings(), redis_connection(), execution.id, body))


@endpoint(bp, "DELETE", "/executions/<execution_id>", response=ExecutionSummary, access="write", errors=(409,))
def delete(execution_id: str, principal: Principal) -> dict[str, Any]:
    """Delete an ended execution with its logs, metrics, checkpoints and files; answers what it was.
    409 while it has not ended, or when it trained the weights its model holds (delete the model)."""
    return execution_view(deletion.delete_execution(settings(), execution_id, principal.reach), detail=False)


def _rows_of(entity: type[peewee.Model], execution_id: str, principal: Principal) -> peewee.ModelSelect:
    """The rows of ``entity`` that belong to the execution (which the caller must reach)."""
    execution = control.get_execution(execution_id, principal.reach)
    return entity.select().where(entity.execution == execution.id)


@endpoint(bp, "GET", "/executions/<execution_id>/metrics", query=ListQuery, response=Page[MetricOut])
def metrics(execution_id: str, query: ListQuery, principal: Principal) -> dict[str, Any]:
    """Metric samples in the order they were reported."""
    rows = _rows_of(MetricSample, execution_id, principal)
    return page(*paginate(rows, (MetricSample.id,), query.limit, query.cursor, descending=False), metric_view)


@endpoint(bp, "GET", "/executions/<execution_id>/logs", query=LogQuery, response=Page[LogOut])
def logs(execution_id: str, query: LogQuery, principal: Principal) -> dict[str, Any]:
    """Log lines in order; ``after`` (a line id) follows a running execution. A page ends early
    once its lines hold TRAINFAAS_MAX_LOG_PAGE_CHARS characters; its cursor continues."""
    rows = _rows_of(LogLine, execution_id, principal).where(LogLine.id > query.after)
    return page(*paginate(rows, (LogLine.id,), query.limit, query.cursor, descending=False,
                          size=lambda row: len(row.line), budget=settings().max_log_page_chars), log_view)


@endpoint(bp, "GET", "/executions/<execution_id>/artifacts", query=ListQuery, response=Page[ArtifactOut])
def artifacts(execution_id: str, query: ListQuery, principal: Principal) -> dict[str, Any]:
    """Checkpoints and the saved model, in the order they were written."""
    rows = _rows_of(Artifact, execution_id, principal)
    return page(*paginate(rows, (Artifact.id,), query.limit, query.cursor, descending=False), artifact_view)
