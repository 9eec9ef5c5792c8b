"""SQLite write transactions under concurrent writers: a transaction that read before another
connection committed still writes (it holds the write lock from its BEGIN, and the other writer
waits), instead of failing at once as ``database is locked``. PostgreSQL is opened as before."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
from playhouse.pool import PooledPostgresqlDatabase

from trainfaas.services.store import database as database_module
from trainfaas.services.store.database import database, open_database
from trainfaas.services.store.migrations import migrate
from trainfaas.services.store.records import Project

INSERT = "INSERT INTO project (name, description, created_at) VALUES (?, '', 0)"


@pytest.fixture(params=[False, True], ids=["unpooled", "pooled"])
def sqlite_file(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[Path]:
    path = short_tmp / "test.db"
    open_database(f"sqlite:///{path}", pooled=request.param)
    migrate()
    yield path
    if not database.is_closed():
        database.close()


def other_connection(path: Path) -> sqlite3.Connection:
    """Another process's connection to the same file, which does not wait for a lock (timeout 0):
    where a real one would wait for the lock, this one says so at once."""
    return sqlite3.connect(path, timeout=0, isolation_level=None)


def test_a_transaction_that_read_first_writes_after_another_connection_tried_to_commit(sqlite_file: Path) -> None:
    other = other_connection(sqlite_file)
    with database.atomic():
        assert not Project.select().where(Project.name == "mine").exists()  # a deferred transaction's read snapshot starts here
        # The other writer cannot commit inside our transaction: it must wait for our write lock.
        # (Begun deferred, ours held only a read snapshot: the other's commit went through, and
        # our write below then failed at once with "database is locked".)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            other.execute(INSERT, ("other",))
        Project.create(name="mine")
    other.execute(INSERT, ("other",))  # once ours has committed, it goes through
    assert Project.select().where(Project.name.in_(["mine", "other"])).count() == 2
    other.close()


def test_a_caller_that_names_its_lock_type_keeps_it(sqlite_file: Path) -> None:
    other = other_connection(sqlite_file)
    with database.atomic(lock_type="DEFERRED"):
        assert not Project.select().where(Project.name == "mine").exists()
        other.execute(INSERT, ("other",))  # a deferred transaction takes no write lock until it writes
        with pytest.raises(peewee.OperationalError, match="database is locked"):
            Project.create(name="mine")
    other.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_is_opened_with_its_own_classes(database_url: str) -> None:
    assert isinstance(open_database(database_url, pooled=True), PooledPostgresqlDatabase)
    with database.atomic():
        Project.create(name="mine")
    assert Project.select().where(Project.name == "mine").count() == 1


def _backend_pid() -> int:
    return int(database.execute_sql("SELECT pg_backend_pid()").fetchone()[0])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_pooled_connection_handed_back_just_now_is_taken_again_unchecked_and_one_idle_longer_is_checked(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg2

    admin = psycopg2.connect(database_url)
    admin.autocommit = True

    def last_statement(pid: int) -> str | None:
        with admin.cursor() as cursor:  # the server's own record of what that connection ran last
            cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
            row = cursor.fetchone()
        return row[0] if row else None

    open_database(database_url, pooled=True)
    database.connect()
    first = _backend_pid()
    database.close()
    database.connect()  # handed back just now: taken again without a round trip
    assert last_statement(first) == "SELECT pg_backend_pid()"
    assert _backend_pid() == first
    database.close()
    monkeypatch.setattr(database_module, "ALIVE_BYPASS_S", 0.0)  # as if it had waited in the pool longer
    database.connect()
    assert last_statement(first) == "SELECT 1"  # checked first
    database.close()
    with admin.cursor() as cursor:  # the server ends it while it waits in the pool
        cursor.execute("SELECT pg_terminate_backend(%s)", (first,))
    database.connect()  # checked, found closed, replaced
    second = _backend_pid()
    assert second != first
    database.close()
    monkeypatch.setattr(database_module, "ALIVE_BYPASS_S", 3600.0)
    with admin.cursor() as cursor:  # ended again, but handed back "just now": taken unchecked
        cursor.execute("SELECT pg_terminate_backend(%s)", (second,))
    database.connect()
    with pytest.raises(peewee.OperationalError):  # the one request that takes it fails
        _backend_pid()
    database.close()  # and it leaves the pool
    database.connect()
    assert _backend_pid() not in (first, second)
    database.close()
    admin.close()
