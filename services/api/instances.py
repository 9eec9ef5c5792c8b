"""The instance-facing API: register, claim, report, finish, heartbeat, deregister.

Every call but register carries the instance's own token (not a user token), which only reaches
executions of that instance's service; every write is fenced by attempt number. The bodies and
answers are the messages of trainfaas.services.core.protocol, which the instance uses too.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from trainfaas.services.api import redis_connection, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import DeregisterOut, ExecutionSummary, InstanceRegistered
from trainfaas.services.api.views import execution_view, instance_view
from trainfaas.services.control import attempts, instances, reports
from trainfaas.services.control import tokens as auth
from trainfaas.services.core import protocol
from trainfaas.services.store.records import Instance

bp = Blueprint("instances", __name__, url_prefix="/api/v1/instances")


@endpoint(bp, "POST", "", body=protocol.InstanceRegister, response=InstanceRegistered, status=201, access="register",
          errors=(404, 409), links={"id": "/instances/{instance_id}", "service": "/services/{name}"})
def register(body: protocol.InstanceRegister) -> dict[str, Any]:
    """Register an instance of a service (or adopt the row the scheduler made for it); returns its token once.

    Needs the service's registration token (the scheduler gives it to the instances it starts)
    or an admin token."""
    auth.require_registration(request.headers.get("Authorization"), settings().instance_secret_value(), body.service)
    instance, token = instances.register(body)
    return {**instance_view(instance), "token": token, "concurrency": instance.service.concurrency}


@endpoint(bp, "POST", "/<instance_id>/claim", body=protocol.Claim, response=protocol.ClaimReply, access="instance", errors=(409,))
def claim(instance_id: str, body: protocol.Claim, instance: Instance) -> protocol.ClaimReply:
    """Start an attempt of an execution of this instance's service; returns what to run."""
    return attempts.claim(settings(), instance, body.execution_id, body.attempt)


@endpoint(bp, "POST", "/<instance_id>/report", body=protocol.Report, response=protocol.ReportReply, access="instance")
def report(instance_id: str, body: protocol.Report, instance: Instance) -> protocol.ReportReply:
    """Progress, metrics, logs and checkpoints of running attempts, each checked on its own.

    ``refused`` names executions whose attempt is not this instance's current one (stop them);
    ``rejected`` names events refused by themselves; the others are stored, up to the caps per attempt."""
    return reports.record_events(settings(), instance, body.events)


@endpoint(bp, "POST", "/<instance_id>/executions/<execution_id>/finish", body=protocol.Finish, response=ExecutionSummary,
          access="instance", errors=(409,))
def finish(instance_id: str, execution_id: str, body: protocol.Finish, instance: Instance) -> dict[str, Any]:
    """How an attempt ended: success, failed, reset or terminated; only from the instance that claimed it."""
    return execution_view(attempts.finish(redis_connection(), settings(), instance, execution_id, body), detail=False)


@endpoint(bp, "POST", "/<instance_id>/heartbeat", body=protocol.Heartbeat, response=protocol.HeartbeatReply, access="instance")
def heartbeat(instance_id: str, body: protocol.Heartbeat, instance: Instance) -> protocol.HeartbeatReply:
    """The instance is alive; the answer says what to stop, abandon or drain (everything, once it has ended)."""
    return instances.heartbeat(instance, body)


@endpoint(bp, "POST", "/<instance_id>/deregister", body=protocol.Deregister, response=DeregisterOut, access="instance")
def deregister(instance_id: str, body: protocol.Deregister, instance: Instance) -> dict[str, Any]:
    """The instance exits; the answer is the status it ends with (lost or failed, if it had ended before)."""
    return {"status": instances.deregister(instance, body.reason)}
