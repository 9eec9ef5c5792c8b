"""Services: list, show, configure; their instances."""
from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint

from services import control, queues
from services.api import body, int_arg, redis_connection, settings
from services.api.views import event_view, instance_view, service_view
from services.models import Instance, Service, ServiceEvent
from services.schemas import ServicePatch

bp = Blueprint("services", __name__, url_prefix="/api/v1/services")


def _depth(name: str) -> int | None:
    try:
        return queues.queue_depth(redis_connection(), name)
    except redis.RedisError:
        return None  # shown as unknown rather than failing the whole page


@bp.get("")
def index() -> dict[str, Any]:
    return {"items": [service_view(s, _depth(s.name)) for s in Service.select().order_by(Service.name)]}


@bp.get("/<name>")
def show(name: str) -> dict[str, Any]:
    return service_view(control.get_service(name), _depth(name))


@bp.patch("/<name>")
def update(name: str) -> dict[str, Any]:
    patch = body(ServicePatch)
    service = Service.get_or_none(Service.name == name)
    if service is None and name.startswith(queues.SERVICE_PREFIX):
        service = control.ensure_service(settings(), name[len(queues.SERVICE_PREFIX):])
    if service is None:
        service = control.get_service(name)
    return service_view(control.update_service(service, patch, settings()), _depth(name))


@bp.post("/<name>/pause")
def pause(name: str) -> tuple[dict[str, Any], int]:
    """No new executions start; queued ones stay pending; instances drain away."""
    service = control.update_service(control.get_service(name), ServicePatch(paused=True))
    return service_view(service, _depth(name)), 202


@bp.post("/<name>/resume")
def resume(name: str) -> tuple[dict[str, Any], int]:
    service = control.update_service(control.get_service(name), ServicePatch(paused=False))
    return service_view(service, _depth(name)), 202


@bp.get("/<name>/events")
def events(name: str) -> dict[str, Any]:
    """Scaling decisions, newest first: what the scheduler saw, wanted and did."""
    control.get_service(name)
    limit = int_arg("limit", 100, 1, 1000)
    rows = ServiceEvent.select().where(ServiceEvent.service == name).order_by(ServiceEvent.at.desc(), ServiceEvent.id.desc()).limit(limit)
    return {"items": [event_view(e) for e in rows]}


@bp.get("/<name>/instances")
def instances(name: str) -> dict[str, Any]:
    control.get_service(name)
    rows = Instance.select().where(Instance.service == name).order_by(Instance.started_at.desc())
    return {"items": [instance_view(i) for i in rows]}
