"""Services: list, show, configure; their instances."""
from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint

from services import control, queues
from services.api import body, redis_connection, settings
from services.api.views import instance_view, service_view
from services.models import Instance, Service
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
    return service_view(control.update_service(service, patch), _depth(name))


@bp.get("/<name>/instances")
def instances(name: str) -> dict[str, Any]:
    control.get_service(name)
    rows = Instance.select().where(Instance.service == name).order_by(Instance.started_at.desc())
    return {"items": [instance_view(i) for i in rows]}
