"""The instance-facing API: register, claim, report, finish, heartbeat, deregister.

Every call but register carries the instance's own token, which only reaches executions of
that instance's service; every write is fenced by attempt number.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from werkzeug.exceptions import Unauthorized

from services import control
from services.api import body, redis_connection, settings
from services.api.views import execution_view, instance_view
from services.models import Instance
from services.schemas import Claim, Deregister, Finish, Heartbeat, InstanceRegister, Report

bp = Blueprint("instances", __name__, url_prefix="/api/v1/instances")


def _instance(instance_id: str) -> Instance:
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    instance = control.authenticate_instance(instance_id, token) if token else None
    if instance is None:
        raise Unauthorized("this call needs the instance's own token: Authorization: Bearer <instance token>")
    return instance


@bp.post("")
def register() -> tuple[dict[str, Any], int]:
    data = body(InstanceRegister)
    instance, token = control.register_instance(data.service, data.instance_id, data.host, data.pid, data.backend)
    return {**instance_view(instance), "token": token, "concurrency": instance.service.concurrency}, 201


@bp.post("/<instance_id>/claim")
def claim(instance_id: str) -> dict[str, Any]:
    data = body(Claim)
    return control.claim(settings(), _instance(instance_id), data.execution_id, data.attempt)


@bp.post("/<instance_id>/report")
def report(instance_id: str) -> dict[str, Any]:
    data = body(Report)
    return {"refused": control.record_events(_instance(instance_id), data.events)}


@bp.post("/<instance_id>/executions/<execution_id>/finish")
def finish(instance_id: str, execution_id: str) -> dict[str, Any]:
    data = body(Finish)
    instance = _instance(instance_id)
    execution = control.finish(redis_connection(), instance, execution_id, data.attempt, data.outcome,
                               data.reason, data.error, data.traceback, data.output)
    return execution_view(execution, detail=False)


@bp.post("/<instance_id>/heartbeat")
def heartbeat(instance_id: str) -> dict[str, Any]:
    data = body(Heartbeat)
    return control.heartbeat(_instance(instance_id), data.status, data.running)


@bp.post("/<instance_id>/deregister")
def deregister(instance_id: str) -> dict[str, Any]:
    data = body(Deregister)
    control.deregister(_instance(instance_id), data.reason)
    return {"status": "exited"}
