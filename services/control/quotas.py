"""Per-project quotas: how many executions a project may have waiting, and how many may run.

A project's own limits (set by an admin) override the settings' defaults
(``TRAINFAAS_PROJECT_MAX_QUEUED``, ``TRAINFAAS_PROJECT_MAX_RUNNING``). One more waiting execution
than allowed is refused at enqueue (QuotaExceeded, 429; nothing written); an execution beyond the
running limit stays pending: the claim refuses it (ProjectAtRunningLimit) and says why in its
message. Each check counts inside a transaction that holds the project's lock (:func:`locked`)
and writes in that same transaction, so concurrent enqueues or claims cannot overshoot.
"""
from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee

from trainfaas.services.core.errors import NotFound, ProjectAtRunningLimit, QuotaExceeded
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import WAITING_EXECUTION, ExecutionStatus
from trainfaas.services.store.database import Statement, database, run_together
from trainfaas.services.store.records import Execution, Project, now_s, prepared

QUEUED = (ExecutionStatus.CREATED, *sorted(WAITING_EXECUTION))
"""The statuses that count as queued: the row exists and waits for an instance."""
LOCK_SPACE = 0x7466  # the first key of PostgreSQL's two-key advisory locks: "tf"


@dataclasses.dataclass(frozen=True)
class Limits:
    """A project's limits in force, whether each is the project's own, and its current usage."""

    max_queued: int
    max_running: int
    own_max_queued: bool
    own_max_running: bool
    queued: int
    running: int

    def view(self) -> dict[str, Any]:
        return {"max_queued": self.max_queued, "max_running": self.max_running, "queued": self.queued, "running": self.running,
                "max_queued_source": "project" if self.own_max_queued else "default",
                "max_running_source": "project" if self.own_max_running else "default"}


def usage(project: str) -> tuple[int, int]:
    """(queued, running) executions of ``project`` now."""
    rows = Execution.select().where(Execution.project == project)
    return rows.where(Execution.status.in_(QUEUED)).count(), rows.where(Execution.status == ExecutionStatus.IN_PROGRESS).count()


def limits_of(settings: Settings, project: str | Project | None) -> Limits:
    """The limits in force for ``project`` (a name or a row; a project without a row has the defaults) and its usage."""
    row = project if isinstance(project, Project) or project is None else Project.get_or_none(Project.name == project)
    name = row.name if row is not None else str(project)
    own_queued = row is not None and row.max_queued is not None
    own_running = row is not None and row.max_running is not None
    queued, running = usage(name)
    return Limits(max_queued=row.max_queued if own_queued else settings.project_max_queued,  # type: ignore[union-attr]
                  max_running=row.max_running if own_running else settings.project_max_running,  # type: ignore[union-attr]
                  own_max_queued=own_queued, own_max_running=own_running, queued=queued, running=running)


@contextmanager
def locked(project: str) -> Iterator[None]:
    """A transaction that holds ``project``'s quota lock until it ends: counts taken inside it stay
    true until its writes commit. SQLite: the database's write lock, taken at BEGIN (IMMEDIATE);
    PostgreSQL: a transaction-scoped advisory lock on the project's name. Nested inside another
    transaction, SQLite can only rely on that one's lock."""
    with writing():
        lock(project)
        yield


@contextmanager
def writing() -> Iterator[None]:
    """A transaction (a savepoint inside another one) that, on SQLite, holds the database's write
    lock from its start (BEGIN IMMEDIATE), so that a count inside it stays true until it commits.
    On PostgreSQL, take each project's :func:`lock` inside it before counting (see :func:`lock_and_check`)."""
    db = database.obj
    with db.atomic(lock_type="IMMEDIATE") if isinstance(db, peewee.SqliteDatabase) else db.atomic():
        yield


def lock(project: str) -> None:
    """Hold ``project``'s quota lock until the current transaction ends: on PostgreSQL a
    transaction-scoped advisory lock on its name; on SQLite nothing more than the write lock that
    :func:`writing` holds."""
    db = database.obj
    if not isinstance(db, peewee.SqliteDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, _key(project)))


def _key(project: str) -> int:
    """A stable signed 32-bit key of a project's name."""
    value = zlib.crc32(project.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def queued_limit(settings: Settings, project: str) -> tuple[int, bool]:
    """``project``'s queued limit in force, and whether it is the project's own (else the default)."""
    return _limit(project, "max_queued", settings.project_max_queued)


def _limit(project: str, name: str, default: int) -> tuple[int, bool]:
    """``project``'s limit ``name`` (max_queued, max_running) in force, and whether it is the project's own."""
    row = Project.by_key(Project.name, project)
    own = row is not None and getattr(row, name) is not None
    return (getattr(row, name) if own else default), own


def check_queued(settings: Settings, project: str, adding: int = 1, limit: tuple[int, bool] | None = None) -> None:
    """Raise QuotaExceeded (429) if ``adding`` more waiting executions would take ``project`` past
    its queued limit (``limit``: its :func:`queued_limit`, when the caller read it already). Call it
    inside :func:`locked` with the write that adds the executions: what it counts there stays true."""
    most, own = limit if limit is not None else queued_limit(settings, project)
    if most - adding < 0 or _queued(project).limit(1).offset(most - adding).exists():
        _refuse(project, adding, most, own, already=0)


def lock_and_check(adding: dict[str, int], limits: dict[str, tuple[int, bool]], after: list[Statement] | None = None) -> None:
    """Inside :func:`writing`, after the executions are written (by ``after``, when given: the
    statements that write them, run first): take each project's :func:`lock` (always in the same
    order, so that two batches never wait on each other) and raise QuotaExceeded (429) for the first
    project that ``adding[project]`` recorded executions took past its limit (``limits``: each
    project's :func:`queued_limit`). The locks are held for this check and the commit only. Each
    check reads at most one row, the one past the limit (``LIMIT 1 OFFSET``: the scan stops there).
    On PostgreSQL the writes, the locks and the checks go in one round trip (each statement of it
    sees what was committed before it: READ COMMITTED)."""
    projects = sorted(adding)
    db = database.obj
    select = peewee.Select(columns=[peewee.fn.EXISTS(_queued(project).limit(1).offset(max(limits[project][0], 0)))
                                    for project in projects])
    locks: list[Statement] = []
    if not isinstance(db, peewee.SqliteDatabase):
        locks = [("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_SPACE, _key(project)]) for project in projects]
    sql, params = db.get_sql_context().sql(select).query()
    over = run_together([*(after or []), *locks, (sql, list(params))]).fetchone()
    for project, past in zip(projects, over, strict=True):
        if past:
            _refuse(project, adding[project], *limits[project], already=adding[project])


def _running(project: str) -> peewee.ModelSelect:
    return Execution.select(Execution.id).where((Execution.project == project) & (Execution.status == ExecutionStatus.IN_PROGRESS))


def _runs_at_least(project: str, most: int) -> bool:
    """Whether ``project`` runs ``most`` executions or more: one row read, past the others (a hot
    query: every claim asks it, and its SQL is built once, see records.prepared)."""
    sql, params = prepared("runs at least", lambda name, skip: _running(name).limit(1).offset(skip), project, most - 1)
    return database.execute_sql(sql, params).fetchone() is not None


def _queued(project: str) -> peewee.ModelSelect:
    return Execution.select(Execution.id).where((Execution.project == project) & Execution.status.in_(QUEUED))


def _refuse(project: str, adding: int, most: int, own: bool, already: int) -> None:
    """Raise QuotaExceeded: ``adding`` more executions take ``project`` past ``most`` (``already``:
    how many of them this transaction recorded). Counts the queued executions for the message."""
    queued = _queued(project).count() - already
    source = "its own limit, set by an admin" if own else "the server's default, TRAINFAAS_PROJECT_MAX_QUEUED"
    these = "one more" if adding == 1 else f"{adding} more"
    raise QuotaExceeded(
        f"project {project} has {queued} executions queued, its limit is {most} ({source}), so {these} cannot be queued;"
        f" wait until some of them start or end, or ask an admin to raise it: trainfaas projects limits {project} --max-queued N",
        {"project": f"at most {most} queued executions; {queued} now"})


def running_limit_reached(settings: Settings, execution: Execution, attempt: int) -> str | None:
    """Why ``attempt`` of the execution cannot start now (its project already runs its most
    executions), or None; None too for an attempt that is not waiting (the claim refuses it).
    Call it inside :func:`locked` with the claim, and :func:`hold` after that transaction."""
    if execution.status not in WAITING_EXECUTION or execution.attempt != attempt:
        return None
    most, _ = _limit(execution.project, "max_running", settings.project_max_running)
    # Reads at most one row, the one at the limit (LIMIT 1 OFFSET); they are counted only to say so.
    if most > 0 and not _runs_at_least(execution.project, most):
        return None
    return (f"waiting: project {execution.project} runs {_running(execution.project).count()} executions, its limit"
            f" (max_running {most}); it starts when one of them ends")


def hold(execution: Execution, why: str) -> None:
    """Say ``why`` in the (still waiting) execution's message and raise ProjectAtRunningLimit."""
    # Its instance puts it back at the end of the queue, so that other projects' executions start:
    # its place in the queue (queued_at) moves there too.
    Execution.update(message=why, queued_at=now_s()).where((Execution.id == execution.id) & Execution.status.in_(QUEUED)).execute()
    raise ProjectAtRunningLimit(why, {"project": "fewer running executions (max_running)"})


def update_project(name: str, **changes: Any) -> Project:
    """Change a project's description or its own limits (a limit None: back to the settings'
    default). NotFound without the project."""
    project = Project.get_or_none(Project.name == name)
    if project is None:
        raise NotFound(f"project {name} does not exist")
    if changes:
        Project.update(**changes).where(Project.name == name).execute()
    return Project.get_by_id(name)
