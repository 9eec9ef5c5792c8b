"""The instance-facing API: register, claim, report, finish, heartbeat, deregister; and an
admin's revocation of a pending registration.

Every call but register carries the instance's own token (not a user token), which only reaches
executions of that instance's service; every write is fenced by attempt number. The bodies and
answers are the messages of trainfaas.services.core.protocol, which the instance uses too.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from trainfaas.services.api import redis_connection, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import DeregisterOut, ExecutionSummary, InstanceOut, InstanceRegistered
from trainfaas.services.api.views import execution_view, instance_view
from trainfaas.services.control import attempts, instances, quotas, reports
from trainfaas.services.control import tokens as auth
from trainfaas.services.control.services import get_service
from trainfaas.services.control.tokens import Principal
from trainfaas.services.core import protocol
from trainfaas.services.core.errors import TrainfaasError, Unauthorized
from trainfaas.services.store.records import Instance

SWARM = "swarm"  # the backend whose tasks register with their service's credential (no instance id)

bp = Blueprint("instances", __name__, url_prefix="/api/v1/instances")


@endpoint(bp, "POST", "", body=protocol.InstanceRegister, response=InstanceRegistered, status=201, access="register",
          errors=(404, 409), links={"id": "/instances/{instance_id}", "service": "/services/{name}"})
def register(body: protocol.InstanceRegister) -> dict[str, Any]:
    """Register an instance of a service (or adopt the row the scheduler made for it); returns its token once.

    Needs the one-time registration token the scheduler gave the instance it started (with its
    ``instance_id``; 401 when it is not that row's, is of another service or has expired, 409 once
    used or when the row has ended), a swarm task's service credential, or an admin token."""
    header = request.headers.get("Authorization")
    secret = auth.registration_secret(header)
    if secret is None:
        if not auth.authenticate(header).is_admin:
            raise Unauthorized("registering an instance needs its registration token or an admin token",
                               {"Authorization": "Bearer <registration or admin token>"})
        instance, token = instances.register(body)
    elif body.instance_id or get_service(body.service).backend != SWARM:
        instance, token = instances.redeem(body, secret)
    else:
        auth.require_swarm_registration(secret, settings().instance_secret_value(), body.service)
        instance, token = instances.register(body)
    return {**instance_view(instance), "token": token, "concurrency": instance.service.concurrency}


@endpoint(bp, "DELETE", "/<instance_id>/registration", response=InstanceOut, access="admin", errors=(404, 409))
def revoke_registration(instance_id: str, principal: Principal) -> dict[str, Any]:
    """Revoke the pending registration of an instance that has not registered yet; it fails.

    Its one-time registration token stops working at once and the scheduler starts a replacement.
    409 when the instance has registered already or has ended."""
    return instance_view(instances.revoke_registration(instance_id))


@endpoint(bp, "POST", "/<instance_id>/claim", body=protocol.Claim, response=protocol.ClaimReply, access="instance", errors=(409,))
def claim(instance_id: str, body: protocol.Claim, instance: Instance) -> protocol.ClaimReply:
    """Start an attempt of an execution of this instance's service; returns what to run."""
    return attempts.claim(settings(), instance, body.execution_id, body.attempt)


@endpoint(bp, "POST", "/<instance_id>/claim-after", body=protocol.ClaimAfter, response=protocol.ClaimAfterReply, access="instance")
def claim_after(instance_id: str, body: protocol.ClaimAfter, instance: Instance) -> protocol.ClaimAfterReply:
    """Record how the ``finished`` attempts ended, in order, each as its own finish call would, then claim
    ``claim``: one round trip instead of two for an instance that runs short executions one after another.

    Answers 200 whatever the parts' outcomes: each finish's refusal, and the claim's, is in the answer with
    the status and code that part alone would have answered (409 ``stale_attempt``, ``service_paused``, …).
    All parts commit in one transaction (a refused part writes nothing, as alone: each change of state is a
    savepoint of its own); should it fail as a whole, nothing of it is kept and the instance sends the
    finishes on their own."""
    answers, connection = [], redis_connection()
    with quotas.writing():
        for item in body.finished:
            try:
                reports.finish_with_events(connection, settings(), instance, item.execution_id, item.finish, ring=False)
                refused = None
            except TrainfaasError as exc:
                refused = _refusal(exc)
            answers.append(protocol.FinishAnswer(execution_id=item.execution_id, attempt=item.finish.attempt, refused=refused))
        try:
            reply = attempts.claim(settings(), instance, body.claim.execution_id, body.claim.attempt)
        except TrainfaasError as exc:
            reply, refusal = None, _refusal(exc)
    if reply is not None:  # one ended and another started: the service runs as many as before
        return protocol.ClaimAfterReply(finished=answers, claim=reply)
    if any(answer.refused is None for answer in answers):
        attempts.ring_doorbell(connection, instance.service_id)  # fewer run now: the scheduler sizes the service
    return protocol.ClaimAfterReply(finished=answers, refused=refusal)


def _refusal(exc: TrainfaasError) -> protocol.Refusal:
    """What the API would have answered the refused part alone with."""
    return protocol.Refusal(status=exc.http_status, code=exc.code, message=exc.message)


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
    return execution_view(reports.finish_with_events(redis_connection(), settings(), instance, execution_id, body), detail=False)


@endpoint(bp, "POST", "/<instance_id>/heartbeat", body=protocol.Heartbeat, response=protocol.HeartbeatReply, access="instance")
def heartbeat(instance_id: str, body: protocol.Heartbeat, instance: Instance) -> protocol.HeartbeatReply:
    """The instance is alive; the answer says what to stop, abandon or drain (everything, once it has ended)."""
    return instances.heartbeat(instance, body)


@endpoint(bp, "POST", "/<instance_id>/deregister", body=protocol.Deregister, response=DeregisterOut, access="instance")
def deregister(instance_id: str, body: protocol.Deregister, instance: Instance) -> dict[str, Any]:
    """The instance exits; the answer is the status it ends with (lost or failed, if it had ended before)."""
    return {"status": instances.deregister(instance, body.reason)}
