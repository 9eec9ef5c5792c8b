"""Executions: the runs table, one run's page with its plots, logs and actions, and runs compared."""
from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for

from trainfaas.services.api import blueprints as api_blueprints
from trainfaas.services.api import checkpoints as api_checkpoints
from trainfaas.services.api import executions as api_executions
from trainfaas.services.api import services as api_services
from trainfaas.services.api.schemas import ExecutionQuery, ListQuery, ServiceQuery
from trainfaas.services.control import compare as control_compare
from trainfaas.services.control import executions as control
from trainfaas.services.core.errors import TrainfaasError
from trainfaas.services.core.statuses import TERMINAL_EXECUTION, ExecutionStatus
from trainfaas.services.store.records import LogLine, MetricSample, Model
from trainfaas.services.ui.sessions import Session
from trainfaas.services.ui.web import STATUS_WORDS, bp, elapsed, error_page, failure_fields, page, render

PAGE_SIZE = 50
LOG_LINES = 500
MAX_POINTS = 1000
WAITING = {ExecutionStatus.CREATED, ExecutionStatus.PENDING, ExecutionStatus.RERUN}


def _services(session: Session) -> list[dict[str, Any]]:
    return list(api_services.index(query=ServiceQuery(limit=500), principal=session.principal)["items"])


@bp.get("/")
@page()
def executions(session: Session) -> Any:
    filters = {key: request.args.get(key, "").strip() for key in ("status", "service", "q")}
    if filters["status"] and filters["status"] not in STATUS_WORDS:
        return error_page(422, "Invalid filter", "Pick a status from the list.", {"status": ", ".join(STATUS_WORDS)}), 422
    query = ExecutionQuery(limit=PAGE_SIZE, cursor=request.args.get("cursor") or None,
                           **{key: value for key, value in filters.items() if value})
    listed = api_executions.index(query=query, principal=session.principal)
    services = {service["name"]: service for service in _services(session)}
    models = {m.id: m for m in Model.select(Model.id, Model.name, Model.architecture)
              .where(Model.id.in_([row["model_id"] for row in listed["items"] if row["model_id"]]))}
    rows = []
    for row in listed["items"]:
        model = models.get(row["model_id"])
        service = services.get(row["service"], {})
        trouble = row["status"] in WAITING and service.get("health") in ("warning", "error")
        rows.append({**row, "model_name": model.name if model else "", "elapsed": elapsed(row),
                     "architecture": model.architecture if model else service.get("architecture", ""),
                     "trouble": service.get("health") if trouble else None, "trouble_reason": service.get("health_reason", "")})
    return render("executions.html", rows=rows, filters=filters, statuses=STATUS_WORDS, services=sorted(services),
                  next_cursor=listed["next_cursor"], highlight=request.args.get("created", ""))


@bp.get("/executions/<execution_id>")
@page()
def execution(session: Session, execution_id: str) -> Any:
    view = api_executions.show(execution_id=execution_id, principal=session.principal)
    try:
        config = api_blueprints.execution_config(execution_id=view["id"], principal=session.principal)
    except TrainfaasError:
        config = None  # not a training: it has no configuration of options
    logs = list(LogLine.select().where(LogLine.execution == view["id"]).order_by(LogLine.id.desc()).limit(LOG_LINES))[::-1]
    checkpoints = api_checkpoints.index(execution_id=view["id"], query=ListQuery(limit=100), principal=session.principal)["items"]
    return render("execution.html", run=view, elapsed=elapsed(view), config=config, logs=logs, checkpoints=checkpoints,
                  charts=_series(view["id"]), live=view["status"] not in TERMINAL_EXECUTION,
                  can_terminate=view["status"] not in TERMINAL_EXECUTION and not view["stop_requested"],
                  can_rerun=view["status"] in TERMINAL_EXECUTION)


def _series(execution_id: str) -> list[dict[str, Any]]:
    """The execution's metric series, one chart per figure: the steps, and each legend's value at each step."""
    rows = (MetricSample.select(MetricSample.figure, MetricSample.legend, MetricSample.x, MetricSample.y)
            .where(MetricSample.execution == execution_id))
    newest = list(rows.order_by(MetricSample.attempt.desc(), MetricSample.id.desc()).limit(control_compare.MAX_SAMPLES_READ).tuples())
    return _charts(control_compare.aligned([newest[::-1]], MAX_POINTS), None)


def _charts(series: list[dict[str, Any]], names: list[str] | None) -> list[dict[str, Any]]:
    """Series aligned per (figure, legend) grouped into one chart per figure, its steps the union of theirs.
    ``names``: one line per execution and legend (a comparison); None: one line per legend."""
    figures: dict[str, list[dict[str, Any]]] = {}
    for entry in series:
        figures.setdefault(entry["figure"], []).append(entry)
    charts = []
    for figure, entries in figures.items():
        steps = sorted({x for entry in entries for x in entry["x"]})
        lines = []
        for entry in entries:
            for index, values in enumerate(entry["y"]):
                at = dict(zip(entry["x"], values, strict=True))
                label = entry["legend"] if names is None else f"{names[index]} · {entry['legend']}"
                lines.append({"label": label, "values": [at.get(x) for x in steps]})
        charts.append({"figure": figure, "x": steps, "lines": lines})
    return charts


@bp.post("/executions/<execution_id>/terminate")
@page("write", changes=True)
def terminate(session: Session, execution_id: str) -> Any:
    view = api_executions.terminate(execution_id=execution_id, principal=session.principal)
    return redirect(url_for("ui.execution", execution_id=view["id"]))


@bp.post("/executions/<execution_id>/rerun")
@page("write", changes=True)
def rerun(session: Session, execution_id: str) -> Any:
    try:
        view = api_executions.rerun(execution_id=execution_id, body=control.RerunChanges(), principal=session.principal)
    except TrainfaasError as exc:
        message, fields = failure_fields(exc)
        return error_page(exc.http_status, "Cannot rerun", message, fields), exc.http_status
    return redirect(url_for("ui.execution", execution_id=view["id"]))


@bp.post("/checkpoints/<checkpoint_id>/model")
@page("write", changes=True)
def checkpoint_model(session: Session, checkpoint_id: str) -> Any:
    name = request.form.get("name", "").strip() or None
    made = api_checkpoints.to_model(checkpoint_id=checkpoint_id, body=api_checkpoints.CheckpointModel(name=name), principal=session.principal)
    return redirect(url_for("ui.model", model_id=made["id"]))


@bp.post("/checkpoints/<checkpoint_id>/delete")
@page("write", changes=True)
def checkpoint_delete(session: Session, checkpoint_id: str) -> Any:
    gone = api_checkpoints.delete(checkpoint_id=checkpoint_id, principal=session.principal)
    return redirect(url_for("ui.execution", execution_id=gone["execution_id"]))


@bp.get("/compare")
@page()
def compare(session: Session) -> Any:
    given = request.args.get("executions", "") or ",".join(request.args.getlist("execution"))
    if len(given) > 1000:
        return error_page(422, "Invalid", "Too many executions.", {"executions": "2 to 10 execution ids"}), 422
    result = control_compare.compare(given, session.principal.reach, MAX_POINTS)
    names = [f"{e['name'] or e['id'][:8]} ({e['id'][:6]})" for e in result["executions"]]
    return render("compare.html", result=result, names=names, charts=_charts(result["series"], names))
