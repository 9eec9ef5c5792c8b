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
    assert type(open_database(database_url, pooled=True)) is PooledPostgresqlDatabase
    with database.atomic():
        Project.create(name="mine")
    assert Project.select().where(Project.name == "mine").count() == 1
