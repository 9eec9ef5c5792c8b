"""Models, services (their instances, events and settings) and tokens."""
from __future__ import annotations

import time
from typing import Any

from flask import redirect, request, url_for

from trainfaas.services.api import executions as api_executions
from trainfaas.services.api import iso
from trainfaas.services.api import models as api_models
from trainfaas.services.api import projects as api_projects
from trainfaas.services.api import services as api_services
from trainfaas.services.api.schemas import ExecutionQuery, ListQuery, ModelQuery, NamedListQuery, ServiceQuery
from trainfaas.services.control.services import ServicePatch
from trainfaas.services.store.records import ServiceEvent
from trainfaas.services.ui.sessions import Session
from trainfaas.services.ui.web import bp, error_page, failure_fields, page, render
from trainfaas.services.ui.wizard import folders_of_first_root

SETTINGS_LABELS = {"scaling_type": "Scaling type", "min_instances": "Min instances", "max_instances": "Max instances",
                   "queue_length": "Queue length per instance", "polling_interval_s": "Polling interval (s)", "cooldown_s": "Cooldown (s)",
                   "concurrency": "Concurrency", "instance_type": "Instance type", "timeout_s": "Execution timeout (s)",
                   "drain_time_s": "Drain time (s)", "max_attempts": "Max attempts", "on_reset": "On reset"}
SETTINGS_FIELDS = tuple(SETTINGS_LABELS)


@bp.get("/models")
@page()
def models(session: Session) -> Any:
    q = request.args.get("q", "").strip()
    listed = api_models.index(query=ModelQuery(limit=50, q=q or None, cursor=request.args.get("cursor") or None),
                              principal=session.principal)
    return render("models.html", rows=listed["items"], next_cursor=listed["next_cursor"], q=q)


@bp.get("/models/<model_id>")
@page()
def model(session: Session, model_id: str) -> Any:
    return model_page(session, model_id, {}, "", {}, 200)


def model_page(session: Session, model_id: str, form: dict[str, str], message: str, fields: dict[str, str], status: int) -> Any:
    """A model's page; ``form``, ``message`` and ``fields``: an evaluation or prediction form sent back with what was wrong."""
    view = api_models.show(model_id=model_id, principal=session.principal)
    runs = api_executions.index(query=ExecutionQuery(model=view["id"], limit=50), principal=session.principal)["items"]
    return render("model.html", model=view, runs=runs, form=form, message=message, fields=fields,
                  folders=folders_of_first_root()), status


@bp.post("/models/<model_id>/delete")
@page("write", changes=True)
def model_delete(session: Session, model_id: str) -> Any:
    api_models.delete(model_id=model_id, principal=session.principal)
    return redirect(url_for("ui.models"))


@bp.get("/services")
@page()
def services(session: Session) -> Any:
    rows = api_services.index(query=ServiceQuery(limit=500), principal=session.principal)["items"]
    return render("services.html", rows=rows)


@bp.route("/services/<name>", methods=["GET"])
@page()
def service(session: Session, name: str) -> Any:
    return _service_page(session, name, "", {}, 200)


def _service_page(session: Session, name: str, message: str, fields: dict[str, str], status: int) -> Any:
    view = api_services.show(name=name, principal=session.principal)
    instances = api_services.instances(name=view["name"], query=ListQuery(limit=100), principal=session.principal)["items"]
    events = api_services.events(name=view["name"], query=ListQuery(limit=20), principal=session.principal)["items"]
    hour = list(ServiceEvent.select().where((ServiceEvent.service == view["name"]) & (ServiceEvent.at > time.time() - 3600))
                .order_by(ServiceEvent.at).limit(2000))
    chart = [{"figure": "queue and instances, last hour", "xlabel": "minutes before now", "x": [round(e.at - time.time()) / 60 for e in hour],
              "lines": [{"label": "queued", "values": [e.queued for e in hour]},
                        {"label": "running", "values": [e.running for e in hour]},
                        {"label": "instances", "values": [e.instances for e in hour]}]}] if hour else []
    return render("service.html", service=view, instances=instances, events=events, chart=chart, message=message,
                  fields=fields, settings_labels=SETTINGS_LABELS, saved=request.args.get("saved")), status


@bp.post("/services/<name>")
@page("admin", changes=True)
def service_update(session: Session, name: str) -> Any:
    changes = {key: request.form[key].strip() for key in SETTINGS_FIELDS if request.form.get(key, "").strip() != ""}
    try:
        api_services.update(name=name, body=ServicePatch.model_validate(changes), principal=session.principal)
    except Exception as exc:  # noqa: BLE001 - failure_fields re-raises anything that is not the caller's mistake
        message, fields = failure_fields(exc)
        return _service_page(session, name, message, fields, 422)
    return redirect(url_for("ui.service", name=name, saved=1))


@bp.post("/services/<name>/<action>")
@page("admin", changes=True)
def service_action(session: Session, name: str, action: str) -> Any:
    if action not in ("pause", "resume"):
        return error_page(404, "Not found", "A service can be paused or resumed."), 404
    (api_services.pause if action == "pause" else api_services.resume)(name=name, principal=session.principal)
    return redirect(url_for("ui.service", name=name))


@bp.get("/tokens")
@page("admin")
def tokens(session: Session) -> Any:
    rows = api_projects.list_tokens(query=NamedListQuery(limit=500), principal=session.principal)["items"]
    projects = api_projects.list_projects(query=NamedListQuery(limit=500), principal=session.principal)["items"]
    return render("tokens.html", rows=rows, projects=projects, now=iso(time.time()))
