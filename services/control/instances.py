"""Instances: registering them, knowing them by their token, their heartbeats and their exit;
and the one writer of ``Instance.status``.

Every status change is a compare-and-set (``UPDATE … WHERE id=? AND status IN (allowed
predecessors)``) through :func:`transition`. An instance that has ended (exited, lost, failed)
never comes back: a late heartbeat of an instance the reaper gave up is answered with the order
to drop its work and go, and changes nothing.

    initializing ──► running ◄──► full ◄──► paused       (heartbeats; paused: the service is)
         │              │           │          │
         └──────────────┴─────┬─────┴──────────┘
                              ▼
                         terminating  (the scheduler chose it, or it drains by itself)
                              │
                              ▼
                   exited | lost | failed   (any live status may end so; none comes back)
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

from trainfaas.services.control import ids
from trainfaas.services.control.services import get_service
from trainfaas.services.core.errors import Conflict, InvalidTransition, NotFound
from trainfaas.services.core.protocol import Heartbeat, HeartbeatReply, InstanceRegister
from trainfaas.services.core.statuses import ENDED_INSTANCE, ExecutionStatus, InstanceStatus
from trainfaas.services.store.records import Execution, Instance, Service, now_s

_SERVING = frozenset({InstanceStatus.RUNNING, InstanceStatus.FULL, InstanceStatus.PAUSED})
ALLOWED_INSTANCE: dict[InstanceStatus, frozenset[InstanceStatus]] = {
    InstanceStatus.INITIALIZING: frozenset({InstanceStatus.RUNNING, InstanceStatus.TERMINATING}) | ENDED_INSTANCE,
    InstanceStatus.RUNNING: _SERVING | {InstanceStatus.TERMINATING} | ENDED_INSTANCE,
    InstanceStatus.FULL: _SERVING | {InstanceStatus.TERMINATING} | ENDED_INSTANCE,
    InstanceStatus.PAUSED: _SERVING | {InstanceStatus.TERMINATING} | ENDED_INSTANCE,
    InstanceStatus.TERMINATING: frozenset({InstanceStatus.TERMINATING}) | ENDED_INSTANCE,
    InstanceStatus.EXITED: frozenset(),
    InstanceStatus.LOST: frozenset(),
    InstanceStatus.FAILED: frozenset(),
}
"""Which status may follow which. A live status may follow itself: a heartbeat writes its time
through the same compare-and-set."""


def predecessors(to: InstanceStatus) -> frozenset[InstanceStatus]:
    """Every status ``to`` may follow."""
    return frozenset(source for source, targets in ALLOWED_INSTANCE.items() if to in targets)


def transition(instance_id: str, to: InstanceStatus, *, expect: Iterable[InstanceStatus] | None = None,
               where: Any = None, **fields: Any) -> bool:
    """Move an instance to ``to`` (writing ``fields`` too) if it is in one of ``expect`` (default:
    every status ``to`` may follow) and matches ``where``; return whether it moved.

    Raises InvalidTransition for a move the table does not allow. A lost race is not an error:
    the caller learns it from the False and decides. Thread- and process-safe."""
    to = InstanceStatus(to)
    sources = {InstanceStatus(s) for s in expect} if expect is not None else predecessors(to)
    illegal = sorted(str(s) for s in sources if to not in ALLOWED_INSTANCE[s])
    if illegal:
        raise InvalidTransition(f"illegal instance transition {illegal} -> {to}")
    condition = (Instance.id == instance_id) & Instance.status.in_(sorted(sources))
    if where is not None:
        condition &= where
    return bool(Instance.update(status=to, **fields).where(condition).execute())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def register(request: InstanceRegister) -> tuple[Instance, str]:
    """Register (or adopt the row the scheduler made for) an instance; return it with a fresh token.

    A row is adopted once, while it has no token: registering again with the id of a registered
    instance would hand its executions to whoever knows the id (ids are listed to readers). A
    row the scheduler already asked to go stays terminating; one that has ended is not adopted.
    """
    service = get_service(request.service)
    token = secrets.token_urlsafe(32)
    fields = dict(host=request.host, pid=request.pid, backend=request.backend, heartbeat_at=now_s(),
                  token_hash=hash_token(token), ended_at=None)
    if not request.instance_id:
        return Instance.create(service=service, status=InstanceStatus.RUNNING, **fields), token
    adoptable = Instance.token_hash.is_null() & (Instance.service == service.name)
    for source, to in ((InstanceStatus.INITIALIZING, InstanceStatus.RUNNING), (InstanceStatus.TERMINATING, InstanceStatus.TERMINATING)):
        if transition(request.instance_id, to, expect={source}, where=adoptable, **fields):
            return Instance.get_by_id(request.instance_id), token
    if Instance.get_or_none(Instance.id == request.instance_id) is not None:
        raise Conflict(f"instance {request.instance_id} is already registered, or has ended",
                       {"instance_id": "the id of an instance not registered yet, or none"})
    return Instance.create(id=request.instance_id, service=service, status=InstanceStatus.RUNNING, **fields), token


def replace_token(instance_id: str) -> str:
    """Give an instance a new token and return it; the old one stops working. For operators who
    must act as an instance (and for tests of fencing): the API never calls this."""
    token = secrets.token_urlsafe(32)
    if not Instance.update(token_hash=hash_token(token)).where(Instance.id == instance_id).execute():
        raise NotFound(f"instance {instance_id} does not exist")
    return token


def authenticate(instance_id: str, token: str) -> Instance | None:
    """The instance whose id is (or starts with) ``instance_id`` and whose token is ``token``;
    None otherwise, without saying which of the two is wrong."""
    if not token:
        return None
    try:
        return ids.find(Instance, instance_id, "instance", Instance.token_hash == hash_token(token))
    except (NotFound, Conflict):
        return None


def heartbeat(instance: Instance, beat: Heartbeat) -> HeartbeatReply:
    """Record a heartbeat and tell the instance what to do with the work it runs.

    ``stop``: a user asked these to stop; end them gracefully (should_stop, then terminated).
    ``abandon``: these attempts are no longer this instance's (reset elsewhere); kill them.
    ``paused``: the service is paused; take no new executions until it is resumed.
    ``drain``: the scheduler chose this instance to go: stop pulling, finish, exit.
    An instance that has ended is told to abandon everything and go; its row stays as it is.
    """
    paused = bool(Service.get_by_id(instance.service_id).paused)
    wanted = InstanceStatus.PAUSED if paused and beat.status in (InstanceStatus.RUNNING, InstanceStatus.FULL) else InstanceStatus(beat.status)
    fields = dict(heartbeat_at=now_s(), running=[entry.model_dump() for entry in beat.running])
    if transition(instance.id, wanted, expect=predecessors(wanted) - {InstanceStatus.TERMINATING}, **fields):
        status = wanted
    elif transition(instance.id, InstanceStatus.TERMINATING, expect={InstanceStatus.TERMINATING}, **fields):
        status = InstanceStatus.TERMINATING  # the scheduler asked it to go; it is on its way
    else:
        # The reaper gave this instance up; whatever it still runs belongs to newer attempts.
        return HeartbeatReply(abandon=[entry.execution_id for entry in beat.running], paused=True, drain=True)
    stop, abandon = [], []
    for entry in beat.running:
        execution = Execution.get_or_none(Execution.id == entry.execution_id)
        if execution is None or execution.attempt != entry.attempt or execution.status != ExecutionStatus.IN_PROGRESS:
            abandon.append(entry.execution_id)
        elif execution.stop_requested:
            stop.append(entry.execution_id)
    return HeartbeatReply(stop=stop, abandon=abandon, paused=paused, drain=status == InstanceStatus.TERMINATING)


def deregister(instance: Instance, reason: str) -> InstanceStatus:
    """The instance exits; return the status it ends with. One that has already ended (lost,
    failed) keeps that status."""
    transition(instance.id, InstanceStatus.EXITED, ended_at=now_s(), last_exit_reason=reason, running=[])
    return InstanceStatus(Instance.get_by_id(instance.id).status)
