"""Services: list, show, configure; their scaling events and instances.

Services are shared by every project (one per architecture); any token reads them, only admin
tokens change them.
"""
from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint

from trainfaas.services.api import page, paginate, redis_connection, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import EventOut, InstanceOut, ListQuery, Page, ServiceOut, ServiceQuery
from trainfaas.services.api.views import event_view, instance_view, service_view
from trainfaas.services.control import services as control
from trainfaas.services.control.services import ServicePatch
from trainfaas.services.control.tokens import Principal
from trainfaas.services.store import queues
from trainfaas.services.store.records import Instance, Service, ServiceEvent

bp = Blueprint("services", __name__, url_prefix="/api/v1/services")


def _depth(name: str) -> int | None:
    try:
        return queues.queue_depth(redis_connection(), name)
    except redis.RedisError:
        return None  # shown as unknown rather than failing the whole page


def _view(service: Service) -> dict[str, Any]:
    return service_view(service, _depth(service.name))


@endpoint(bp, "GET", "", query=ServiceQuery, response=Page[ServiceOut])
def index(query: ServiceQuery, principal: Principal) -> dict[str, Any]:
    """List services by name."""
    rows = Service.select()
    if query.q:
        rows = rows.where(Service.name.contains(query.q))
    if query.architecture:
        rows = rows.where(Service.architecture == query.architecture)
    items, cursor = paginate(rows, (Service.name,), query.limit, query.cursor, descending=False)
    return page(items, cursor, _view)


@endpoint(bp, "GET", "/<name>", response=ServiceOut)
def show(name: str, principal: Principal) -> dict[str, Any]:
    """One service with its queue, load and health."""
    return _view(control.get_service(name))


@endpoint(bp, "PATCH", "/<name>", body=ServicePatch, response=ServiceOut, access="admin")
def update(name: str, body: ServicePatch, principal: Principal) -> dict[str, Any]:
    """Change a service's settings; a service of a known architecture can be set up before its first training.
    The answer's ``warnings`` say what in the change will not take effect as it stands (autoscaler
    settings on a fixed service)."""
    service = control.configure_service(settings(), name, body)
    return {**_view(service), "warnings": control.patch_warnings(service, body.model_dump(exclude_none=True))}


@endpoint(bp, "POST", "/<name>/pause", response=ServiceOut, status=202, access="admin")
def pause(name: str, principal: Principal) -> dict[str, Any]:
    """No new executions start; queued ones stay pending; instances drain away."""
    return _view(control.update_service(control.get_service(name), ServicePatch(paused=True)))


def _rows_of(entity: type[Any], name: str) -> Any:
    """The rows of ``entity`` (events, instances) of the service called ``name``; NotFound without one."""
    return entity.select().where(entity.service == control.get_service(name).name)


@endpoint(bp, "POST", "/<name>/resume", response=ServiceOut, status=202, access="admin")
def resume(name: str, principal: Principal) -> dict[str, Any]:
    """Start executions again."""
    return _view(control.update_service(control.get_service(name), ServicePatch(paused=False)))


@endpoint(bp, "GET", "/<name>/events", query=ListQuery, response=Page[EventOut])
def events(name: str, query: ListQuery, principal: Principal) -> dict[str, Any]:
    """Scaling decisions, newest first: what the scheduler saw, wanted and did."""
    return page(*paginate(_rows_of(ServiceEvent, name), (ServiceEvent.at, ServiceEvent.id), query.limit, query.cursor), event_view)


@endpoint(bp, "GET", "/<name>/instances", query=ListQuery, response=Page[InstanceOut])
def instances(name: str, query: ListQuery, principal: Principal) -> dict[str, Any]:
    """The service's instances, newest first; a read or write token sees the ids of its own project's executions only."""
    rows, cursor = paginate(_rows_of(Instance, name), (Instance.started_at, Instance.id), query.limit, query.cursor)
    return page(rows, cursor, lambda instance: instance_view(instance, principal))
