"""The execution state machine: the only writer of ``Execution.status``.

Every change is a compare-and-set on (id, status, attempt) inside one transaction that also
appends a status-log entry. A write whose attempt is not the execution's current one is refused
(fencing), so an instance that was replaced can never overwrite its successor's result.

    created ──► pending ──► in-progress ──► success | failed | terminated | aborted
                   ▲             │
                   └── rerun ◄───┘ (reset with on_reset=rerun, attempts left)
    success | failed | terminated | aborted ──► rerun   (a user asks for a rerun)

What an execution's change means for other rows (its model's status) is written in the same
transaction: each change takes a ``then`` callback, called with the changed execution after the
compare-and-set won and before the transaction commits. A refused change never calls it; a
callback that raises undoes the change. The same transaction records the change's webhook
deliveries (trainfaas.services.control.webhooks), which the scheduler sends later.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import peewee

from trainfaas.services.control import webhooks
from trainfaas.services.core.errors import InvalidTransition, StaleAttempt
from trainfaas.services.core.statuses import TERMINAL_EXECUTION, WAITING_EXECUTION, ExecutionStatus, Outcome
from trainfaas.services.store.database import Statement, database, inserts, run_together
from trainfaas.services.store.records import Attempt, Execution, StatusLog, now_s, write_prepared

log = logging.getLogger(__name__)

S = ExecutionStatus
ALLOWED: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    S.CREATED: frozenset({S.PENDING, S.TERMINATED, S.ABORTED}),
    S.PENDING: frozenset({S.IN_PROGRESS, S.TERMINATED, S.ABORTED}),
    S.RERUN: frozenset({S.IN_PROGRESS, S.TERMINATED, S.ABORTED}),
    S.IN_PROGRESS: frozenset({S.SUCCESS, S.FAILED, S.TERMINATED, S.ABORTED, S.RERUN}),
    S.SUCCESS: frozenset({S.RERUN}),
    S.FAILED: frozenset({S.RERUN}),
    S.TERMINATED: frozenset({S.RERUN}),
    S.ABORTED: frozenset({S.RERUN}),
}

Then = Callable[[Execution], None]
"""What a change means elsewhere; called with the changed execution inside its transaction."""


def transition(
    execution_id: str,
    to: ExecutionStatus,
    *,
    attempt: int,
    expect: Iterable[ExecutionStatus] | None = None,
    note: str = "",
    instance: str | None = None,
    new_attempt: int | None = None,
    then: Then | None = None,
    **fields: Any,
) -> Execution:
    """Move an execution to ``to`` if it is still in one of ``expect`` at ``attempt``.

    ``note`` goes into the status log. ``expect`` defaults to every status from which ``to`` is legal. Extra ``fields`` are written
    in the same UPDATE. Raises InvalidTransition for an illegal move or a lost race, and
    StaleAttempt when the execution has moved on to another attempt; ``new_attempt`` moves it
    to the next attempt in the same write; ``then`` runs in the same transaction (see above).
    Thread- and process-safe.
    """
    to = S(to)
    sources = {S(s) for s in expect} if expect is not None else {s for s, dests in ALLOWED.items() if to in dests}
    illegal = {s for s in sources if to not in ALLOWED[s]}
    if illegal:
        raise InvalidTransition(f"illegal transition {_names(illegal)} -> {to}")
    if new_attempt is not None:
        fields["attempt"] = new_attempt
    if to in WAITING_EXECUTION:
        fields.setdefault("queued_at", now_s())  # its place in its service's queue: the back of it
    names = sorted(fields)
    columns = [getattr(Execution, name) for name in names]
    expected = sorted(sources)

    def update(key: Any, number: Any, *values: Any) -> peewee.Query:
        return Execution.update({Execution.status: to, **dict(zip(columns, values, strict=True))}).where(
            (Execution.id == key) & Execution.status.in_(expected) & (Execution.attempt == number))

    with database.atomic():
        # Built once per kind of move (a hot write: every claim and finish makes two of them).
        changed = write_prepared(f"transition {_names(sources)} -> {to} {names}", update, execution_id, attempt,
                                 *(column.db_value(fields[name]) for name, column in zip(names, columns, strict=True)))
        if changed != 1:
            _explain_refusal(execution_id, to, attempt, sources)
        new_attempt = fields.get("attempt", attempt)
        write_prepared("status log", lambda *slots: StatusLog.insert(
            execution=slots[0], status=slots[1], message=slots[2], attempt=slots[3], instance=slots[4], at=slots[5]),
            execution_id, to.value, note, new_attempt, instance, now_s())
        execution = Execution.by_key(Execution.id, execution_id)
        webhooks.record_change(execution, note)  # the outbox: sent later by the scheduler's deliverer
        if then is not None:
            then(execution)
    log.info("execution %s attempt %s -> %s %s", execution_id, new_attempt, to, note)
    return execution


def _explain_refusal(execution_id: str, to: ExecutionStatus, attempt: int, sources: set[ExecutionStatus]) -> None:
    current = _existing(execution_id)
    if current.attempt != attempt:
        raise StaleAttempt(
            f"execution {execution_id} is at attempt {current.attempt}; a write from attempt {attempt} is refused",
            {"attempt": f"current attempt is {current.attempt}"},
        )
    raise InvalidTransition(
        f"execution {execution_id} is {current.status}; cannot move to {to} (needs one of {_names(sources)})",
        {"status": current.status},
    )


def _names(statuses: Iterable[ExecutionStatus]) -> list[str]:
    return sorted(str(status) for status in statuses)


def _existing(execution_id: str) -> Execution:
    return Execution.by_key(Execution.id, execution_id, missing=f"execution {execution_id} does not exist")  # type: ignore[no-any-return]


def check_current(execution_id: str, attempt: int) -> Execution:
    """Return the execution if ``attempt`` is its current, running attempt; else raise (fencing)."""
    execution = _existing(execution_id)
    if execution.attempt != attempt:
        raise StaleAttempt(
            f"execution {execution_id} is at attempt {execution.attempt}; attempt {attempt} is stale",
            {"attempt": f"current attempt is {execution.attempt}"},
        )
    if execution.status != S.IN_PROGRESS:
        raise InvalidTransition(
            f"execution {execution_id} is {execution.status}, not in-progress", {"status": execution.status}
        )
    return execution


def claim(execution_id: str, attempt: int, instance: str, then: Then | None = None) -> Execution:
    """pending|rerun -> in-progress for ``instance``; opens the Attempt record. Raises if taken."""
    with database.atomic():
        execution = transition(
            execution_id, S.IN_PROGRESS, attempt=attempt, expect=WAITING_EXECUTION,
            instance=instance, note=f"attempt {attempt} started on instance {instance}", then=then,
            started_at=now_s(), finished_at=None, progress=0.0, message="",
        )
        write_prepared("attempt", lambda *slots: Attempt.insert(execution=slots[0], number=slots[1], instance=slots[2], started_at=slots[3]),
                       execution_id, attempt, instance, now_s())
    return execution


USAGE = ("peak_rss_mb", "mean_cpu_percent", "peak_gpu_mem_mb", "mean_gpu_util", "usage_samples")
"""What an attempt's work process used (Attempt's columns), kept when the attempt closes."""


def _close_attempt(execution_id: str, attempt: int, outcome: Outcome, reason: str, usage: dict[str, Any] | None = None) -> None:
    kept = list(USAGE) if usage is not None else []
    columns = [getattr(Attempt, name) for name in kept]

    def update(key: Any, number: Any, ended: Any, out: Any, why: Any, *used: Any) -> peewee.Query:
        return Attempt.update({Attempt.ended_at: ended, Attempt.outcome: out, Attempt.reason: why, **dict(zip(columns, used, strict=True))}).where(
            (Attempt.execution == key) & (Attempt.number == number) & (Attempt.ended_at.is_null()))

    write_prepared(f"close attempt {kept}", update, execution_id, attempt, now_s(), Outcome(outcome).value, reason,
                   *(usage[name] for name in kept))  # type: ignore[index]


def finish(
    execution_id: str,
    attempt: int,
    to: ExecutionStatus,
    reason: str,
    *,
    instance: str | None = None,
    then: Then | None = None,
    usage: dict[str, Any] | None = None,
    **fields: Any,
) -> Execution:
    """in-progress -> success|failed|terminated|aborted; closes the attempt with ``reason`` (and
    what its work process used, ``usage``: see USAGE)."""
    if to not in TERMINAL_EXECUTION:
        raise InvalidTransition(f"{to} is not an end state")
    to = S(to)
    with database.atomic():
        execution = transition(
            execution_id, to, attempt=attempt, expect=(S.IN_PROGRESS,), note=reason,
            instance=instance, finished_at=now_s(), then=then, **fields,
        )
        _close_attempt(execution_id, attempt, Outcome(to), reason, usage)
    return execution


def reset(execution_id: str, attempt: int, reason: str, *, instance: str | None = None, then: Then | None = None,
          usage: dict[str, Any] | None = None) -> Execution:
    """The platform lost or stopped ``attempt``: rerun it if the budget allows, else abort.

    A reset of an execution whose stop was requested ends it as terminated. Returns the execution
    after the change; the caller enqueues it when its status is ``rerun``.
    """
    execution = check_current(execution_id, attempt)
    if execution.stop_requested:
        return finish(execution_id, attempt, S.TERMINATED, f"stopped by user ({reason})", instance=instance, then=then, usage=usage)
    if execution.on_reset == "rerun" and attempt < execution.max_attempts:
        to, note = S.RERUN, f"reset: {reason}; rerun as attempt {attempt + 1} of {execution.max_attempts}"
        fields: dict[str, Any] = dict(new_attempt=attempt + 1, progress=0.0, started_at=None, resume_from=None)
    else:
        why = "on_reset=fail" if execution.on_reset != "rerun" else f"attempts exhausted ({attempt}/{execution.max_attempts})"
        to, note = S.ABORTED, f"reset: {reason}; {why}"
        fields = dict(message=f"reset: {reason}", finished_at=now_s(), error=f"aborted: {reason}; {why}")
    with database.atomic():
        changed = transition(execution_id, to, attempt=attempt, expect=(S.IN_PROGRESS,), instance=instance, note=note,
                             then=then, **fields)
        _close_attempt(execution_id, attempt, Outcome.RESET, reason, usage)
    return changed


def queue(execution_id: str, then: Then | None = None) -> Execution:
    """created -> pending: the execution is about to be put on its service's queue."""
    return transition(execution_id, S.PENDING, attempt=1, expect=(S.CREATED,), note="queued", then=then)


def record_queued(rows: list[dict[str, Any]], then: Then | None = None,
                  listening: dict[str, list[tuple[str, list[str]]]] | None = None,
                  write: Callable[[list[Statement]], Any] = run_together) -> list[Execution]:
    """Record new executions straight into pending, all in one transaction (the caller's, if any):
    the rows in bulk, and for each one the status log of created -> pending ("created", then
    "queued") and its webhook deliveries, as :func:`queue` writes them after a row is created.
    ``rows`` are the executions' fields (without status, attempt and times); ``then`` runs for each
    execution inside the transaction; ``listening``: each project's webhooks (webhooks.listeners), when
    the caller read them already; ``write`` runs the inserts (the caller's, to send what follows them
    in their round trip: see quotas.lock_and_check). The caller puts them on their queues after it
    commits (what it loses there, the reconciler puts back)."""
    at = now_s()
    executions = [Execution(**row, status=S.PENDING.value, attempt=1, created_at=at, queued_at=at) for row in rows]
    log_rows = [{"execution": execution.id, "status": status, "at": at, "message": message, "attempt": 1}
                for execution in executions for status, message in ((S.CREATED.value, "created"), (S.PENDING.value, "queued"))]
    listening = dict(listening or {})
    with database.transaction():  # joins the caller's transaction (a savepoint would cost two more statements)
        write(inserts(Execution, [execution.__data__ for execution in executions]) + inserts(StatusLog, log_rows))
        for execution in executions:
            if execution.project not in listening:
                listening[execution.project] = webhooks.listeners(execution.project)
            webhooks.record_change(execution, "queued", listening[execution.project])
            if then is not None:
                then(execution)
    return executions


def request_stop(execution_id: str, reason: str = "terminated by user", then: Then | None = None) -> Execution:
    """Stop an execution: one not started yet ends now; a running one is asked to stop.

    A running execution keeps its status until its instance reports that the adapter stopped
    (it then ends as terminated); ``stop_requested`` is what the instance sees. Raises Conflict
    (with the current status) for an execution that has already ended.
    """
    execution = _existing(execution_id)
    if execution.status in TERMINAL_EXECUTION:
        raise InvalidTransition(
            f"execution {execution_id} already ended as {execution.status}", {"status": execution.status}
        )
    if execution.status == S.IN_PROGRESS:
        Execution.update(stop_requested=True).where(Execution.id == execution_id).execute()
        return Execution.get_by_id(execution_id)
    return transition(
        execution_id, S.TERMINATED, attempt=execution.attempt, expect=(S(execution.status),),
        note=reason, then=then, finished_at=now_s(), stop_requested=True,
    )


def rerun(execution_id: str, reason: str = "rerun requested by user", then: Then | None = None, **changes: Any) -> Execution:
    """An ended execution runs again as a new attempt; its attempt budget grows to allow it.
    ``changes`` are written with it (new input, settings, where to resume)."""
    execution = _existing(execution_id)
    if execution.status not in TERMINAL_EXECUTION:
        raise InvalidTransition(
            f"execution {execution_id} is {execution.status}; only an ended execution can be rerun",
            {"status": execution.status},
        )
    attempt = execution.attempt + 1
    budget = max(changes.pop("max_attempts", execution.max_attempts), attempt)
    return transition(
        execution_id, S.RERUN, attempt=execution.attempt, expect=(S(execution.status),), then=then,
        note=f"{reason}: attempt {attempt}", new_attempt=attempt, max_attempts=budget,
        stop_requested=False, progress=0.0, started_at=None, finished_at=None, error=None, traceback=None,
        output=None, message="", **{"resume_from": None, **changes},
    )
