"""The instance-facing API: register, claim, report, finish, heartbeat, deregister.

Every call but register carries the instance's own token (not a user token), which only reaches
executions of that instance's service; every write is fenced by attempt number.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from trainfaas.services.api import redis_connection, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import (
    Claim,
    ClaimOut,
    Deregister,
    DeregisterOut,
    ExecutionSummary,
    Finish,
    Heartbeat,
    HeartbeatOut,
    InstanceRegister,
    InstanceRegistered,
    Report,
    ReportOut,
)
from trainfaas.services.api.views import execution_view, instance_view
from trainfaas.services.control import operations as control
from trainfaas.services.control import tokens as auth
from trainfaas.services.store.records import Instance

bp = Blueprint("instances", __name__, url_prefix="/api/v1/instances")


@endpoint(bp, "POST", "", body=InstanceRegister, response=InstanceRegistered, status=201, access="register",
          errors=(404, 409))
def register(body: InstanceRegister) -> dict[str, Any]:
    """Register an instance of a service (or adopt the row the scheduler made for it); returns its token once.

    Needs the service's registration token (the scheduler gives it to the instances it starts)
    or an admin token."""
    auth.require_registration(request.headers.get("Authorization"), settings().instance_secret_value(), body.service)
    instance, token = control.register_instance(body.service, body.instance_id, body.host, body.pid, body.backend)
    return {**instance_view(instance), "token": token, "concurrency": instance.service.concurrency}


@endpoint(bp, "POST", "/<instance_id>/claim", body=Claim, response=ClaimOut, access="instance", errors=(409,))
def claim(instance_id: str, body: Claim, instance: Instance) -> dict[str, Any]:
    """Start an attempt of an execution of this instance's service; returns what to run."""
    return control.claim(settings(), instance, body.execution_id, body.attempt)


@endpoint(bp, "POST", "/<instance_id>/report", body=Report, response=ReportOut, access="instance")
def report(instance_id: str, body: Report, instance: Instance) -> dict[str, Any]:
    """Progress, metrics, logs and checkpoints of running attempts; stale ones are refused."""
    return {"refused": control.record_events(instance, body.events)}


@endpoint(bp, "POST", "/<instance_id>/executions/<execution_id>/finish", body=Finish, response=ExecutionSummary,
          access="instance", errors=(409,))
def finish(instance_id: str, execution_id: str, body: Finish, instance: Instance) -> dict[str, Any]:
    """How an attempt ended: success, failed, reset or terminated."""
    execution = control.finish(redis_connection(), instance, execution_id, body.attempt, body.outcome,
                               body.reason, body.error, body.traceback, body.output)
    return execution_view(execution, detail=False)


@endpoint(bp, "POST", "/<instance_id>/heartbeat", body=Heartbeat, response=HeartbeatOut, access="instance")
def heartbeat(instance_id: str, body: Heartbeat, instance: Instance) -> dict[str, Any]:
    """The instance is alive; the answer says what to stop, abandon or drain."""
    return control.heartbeat(instance, body.status, body.running)


@endpoint(bp, "POST", "/<instance_id>/deregister", body=Deregister, response=DeregisterOut, access="instance")
def deregister(instance_id: str, body: Deregister, instance: Instance) -> dict[str, Any]:
    """The instance exits."""
    control.deregister(instance, body.reason)
    return {"status": "exited"}
