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
import hmac
import secrets
from collections.abc import Iterable
from typing import Any

from trainfaas.services.control import ids
from trainfaas.services.control.services import get_service
from trainfaas.services.control.tokens import REGISTRATION_PREFIX
from trainfaas.services.core.errors import Conflict, InvalidTransition, NotFound, Unauthorized
from trainfaas.services.core.protocol import Heartbeat, HeartbeatReply, InstanceRegister, RunningEntry
from trainfaas.services.core.statuses import ENDED_INSTANCE, ExecutionStatus, InstanceStatus
from trainfaas.services.store.records import Attempt, Execution, Instance, Service, now_s

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
    if to in ENDED_INSTANCE:
        fields = {**REVOKED, **fields}  # an instance that has ended never registers: its token is void
    return bool(Instance.update(status=to, **fields).where(condition).execute())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


REVOKED: dict[str, Any] = {"registration_hash": None, "registration_expires_at": None}
"""The fields of a row without a pending registration."""
# The two ways a row the scheduler made moves when its instance registers.
ADOPTIONS = ((InstanceStatus.INITIALIZING, InstanceStatus.RUNNING), (InstanceStatus.TERMINATING, InstanceStatus.TERMINATING))


def new_registration(ttl_s: float, now: float | None = None) -> tuple[str, dict[str, Any]]:
    """A one-time registration token (``tfr_`` and 256 random bits) and the fields that store it
    on the instance's row: its SHA-256 and when it expires (``ttl_s`` from ``now``). The secret
    itself is stored nowhere; the scheduler hands it to the instance it starts."""
    secret = REGISTRATION_PREFIX + secrets.token_urlsafe(32)
    return secret, {"registration_hash": hash_token(secret), "registration_expires_at": (now_s() if now is None else now) + ttl_s}


def _registered_fields(request: InstanceRegister, token: str) -> dict[str, Any]:
    return dict(host=request.host, pid=request.pid, backend=request.backend, heartbeat_at=now_s(),
                token_hash=hash_token(token), ended_at=None, **REVOKED)


def register(request: InstanceRegister) -> tuple[Instance, str]:
    """Register (or adopt the row the scheduler made for) an instance; return it with a fresh token.
    For admin tokens (an instance started by hand) and swarm tasks: see :func:`redeem` for the
    one-time token of an instance the scheduler started.

    A row is adopted once, while it has no token: registering again with the id of a registered
    instance would hand its executions to whoever knows the id (ids are listed to readers). A
    row the scheduler already asked to go stays terminating; one that has ended is not adopted.
    Adopting a row voids its pending registration.
    """
    service = get_service(request.service)
    token = secrets.token_urlsafe(32)
    fields = _registered_fields(request, token)
    if not request.instance_id:
        return Instance.create(service=service, status=InstanceStatus.RUNNING, **fields), token
    adoptable = Instance.token_hash.is_null() & (Instance.service == service.name)
    for source, to in ADOPTIONS:
        if transition(request.instance_id, to, expect={source}, where=adoptable, **fields):
            return Instance.get_by_id(request.instance_id), token
    if Instance.get_or_none(Instance.id == request.instance_id) is not None:
        raise Conflict(f"instance {request.instance_id} is already registered, or has ended",
                       {"instance_id": "the id of an instance not registered yet, or none"})
    return Instance.create(id=request.instance_id, service=service, status=InstanceStatus.RUNNING, **fields), token


def redeem(request: InstanceRegister, registration: str, now: float | None = None) -> tuple[Instance, str]:
    """Exchange the one-time registration token of the row ``request.instance_id`` for the
    instance's own token: the row is adopted and its registration cleared, in one compare-and-set
    (a second use finds no registration). Anything else writes nothing and raises: Unauthorized
    for a token that is not this row's, is of another service or has expired; Conflict for a row
    that has registered already, has ended, or whose registration was revoked."""
    service = get_service(request.service)
    instance_id = request.instance_id or ""
    digest, at = hash_token(registration), now_s() if now is None else now
    where = {"instance_id": "the id of the instance this registration token was made for"}
    if not instance_id:
        raise Unauthorized("a registration token belongs to one instance: send its instance_id", where)
    token = secrets.token_urlsafe(32)
    valid = ((Instance.registration_hash == digest) & (Instance.registration_expires_at > at)
             & (Instance.service == service.name) & Instance.token_hash.is_null())
    for source, to in ADOPTIONS:
        if transition(instance_id, to, expect={source}, where=valid, **_registered_fields(request, token)):
            return Instance.get_by_id(instance_id), token
    # Nothing was written; say why. A row's status is no secret (any read token lists it); the
    # rest is said only to the holder of the row's own token.
    row = Instance.get_or_none(Instance.id == instance_id)
    if row is None:
        raise Unauthorized(f"instance {instance_id} has no pending registration", where)
    if row.status in ENDED_INSTANCE:
        raise Conflict(f"instance {instance_id} has ended ({row.status}): its registration is void", where)
    if row.registration_hash is None and row.token_hash is not None:
        raise Conflict(f"instance {instance_id} has registered already: a registration token works once", where)
    if row.registration_hash is None:
        raise Unauthorized(f"instance {instance_id} has no pending registration", where)
    if not hmac.compare_digest(row.registration_hash, digest):
        raise Unauthorized(f"this is not the registration token of instance {instance_id}",
                           {"Authorization": f"Bearer <the registration token of instance {instance_id}>"})
    if row.service_id != service.name:
        raise Unauthorized(f"the registration token of instance {instance_id} is not one for {service.name}",
                           {"service": row.service_id})
    if row.registration_expires_at is None or row.registration_expires_at <= at:
        raise Unauthorized(f"the registration token of instance {instance_id} has expired "
                           f"({at - (row.registration_expires_at or at):.0f} s ago)", {"Authorization": "a fresh instance"})
    raise Conflict(f"instance {instance_id} is {row.status}: it cannot register now", where)


def revoke_registration(instance_id: str) -> Instance:
    """Void the pending registration of an instance that has not registered yet: its token stops
    working and the row fails (the scheduler starts a replacement). Conflict when it has none."""
    instance = ids.find(Instance, instance_id, "instance")
    pending = Instance.registration_hash.is_null(False) & Instance.token_hash.is_null()
    if not transition(instance.id, InstanceStatus.FAILED, expect={InstanceStatus.INITIALIZING, InstanceStatus.TERMINATING},
                      where=pending, ended_at=now_s(), last_exit_reason="registration revoked by an admin"):
        raise Conflict(f"instance {instance.id} has no pending registration (it has registered or ended)",
                       {"instance_id": "an instance that has not registered yet"})
    return Instance.get_by_id(instance.id)


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
    hashed = hash_token(token)
    row = Instance.by_key(Instance.id, instance_id)  # the whole id, as instances send it: one prepared lookup
    if row is not None:
        return row if hmac.compare_digest(row.token_hash or "", hashed) else None  # type: ignore[no-any-return]
    try:
        return ids.find(Instance, instance_id, "instance", Instance.token_hash == hashed)
    except (NotFound, Conflict):
        return None


def heartbeat(instance: Instance, beat: Heartbeat) -> HeartbeatReply:
    """Record a heartbeat and tell the instance what to do with the work it runs.

    Only entries of attempts this instance claimed count: the others (an execution of another
    service, or an attempt another instance claimed or nobody did) are not recorded, change
    nothing and are named in ``unknown``.
    ``stop``: a user asked these to stop; end them gracefully (should_stop, then terminated).
    ``abandon``: these attempts are no longer this instance's (reset elsewhere); kill them.
    ``paused``: the service is paused; take no new executions until it is resumed.
    ``drain``: the scheduler chose this instance to go: stop pulling, finish, exit.
    An instance that has ended is told to abandon everything and go; its row stays as it is.
    """
    paused = bool(Service.get_by_id(instance.service_id).paused)
    wanted = InstanceStatus.PAUSED if paused and beat.status in (InstanceStatus.RUNNING, InstanceStatus.FULL) else InstanceStatus(beat.status)
    current, stale, unknown = _sort_running(instance, beat)
    fields = dict(heartbeat_at=now_s(), running=[entry.model_dump() for entry, _ in current])
    if transition(instance.id, wanted, expect=predecessors(wanted) - {InstanceStatus.TERMINATING}, **fields):
        status = wanted
    elif transition(instance.id, InstanceStatus.TERMINATING, expect={InstanceStatus.TERMINATING}, **fields):
        status = InstanceStatus.TERMINATING  # the scheduler asked it to go; it is on its way
    else:
        # The reaper gave this instance up; whatever it still runs belongs to newer attempts.
        return HeartbeatReply(abandon=[entry.execution_id for entry, _ in current] + stale, paused=True, drain=True, unknown=unknown)
    stop = [entry.execution_id for entry, execution in current if execution.stop_requested]
    return HeartbeatReply(stop=stop, abandon=stale, paused=paused, drain=status == InstanceStatus.TERMINATING, unknown=unknown)


def _sort_running(instance: Instance, beat: Heartbeat) -> tuple[list[tuple[RunningEntry, Execution]], list[str], list[str]]:
    """The heartbeat's entries as (current, stale, unknown): the current attempts this instance
    claimed (with their execution), the ids of executions whose attempt it claimed but which is
    no longer current or running, and the ids of every other entry."""
    current: list[tuple[RunningEntry, Execution]] = []
    stale: list[str] = []
    unknown: list[str] = []
    for entry in beat.running:
        claimed = (Attempt.select(Attempt.id).join(Execution, on=(Attempt.execution == Execution.id))
                   .where((Attempt.execution == entry.execution_id) & (Attempt.number == entry.attempt)
                          & (Attempt.instance == instance.id) & (Execution.service == instance.service_id)).exists())
        execution = Execution.get_or_none(Execution.id == entry.execution_id) if claimed else None
        if execution is None:
            unknown.append(entry.execution_id)
        elif execution.attempt != entry.attempt or execution.status != ExecutionStatus.IN_PROGRESS:
            stale.append(entry.execution_id)
        else:
            current.append((entry, execution))
    return current, stale, unknown


def deregister(instance: Instance, reason: str) -> InstanceStatus:
    """The instance exits; return the status it ends with. One that has already ended (lost,
    failed) keeps that status."""
    transition(instance.id, InstanceStatus.EXITED, ended_at=now_s(), last_exit_reason=reason, running=[])
    return InstanceStatus(Instance.get_by_id(instance.id).status)
