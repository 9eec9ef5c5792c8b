"""Migrations bring a database of an earlier version forward without losing rows."""
from __future__ import annotations

from typing import Any

import peewee
import pytest
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.database import database
from trainfaas.services.store.migrations import SchemaVersion
from trainfaas.services.store.migrations import migrate as migrate_all
from trainfaas.services.store.records import DEFAULT_PROJECT, Execution, Instance, Model, Project, Service, Token


def _back_to_version_2(db: peewee.Database) -> None:
    """Undo m0003 by hand: what a database written before projects existed looks like."""
    migrator = SchemaMigrator.from_database(db)
    db.drop_tables([Project, Token])
    for entity in (Model, Execution):
        table = entity._meta.table_name
        later = [index.name for index in db.get_indexes(table) if "project" in index.columns and index.name != f"{table}_project"]
        migrate(*(migrator.drop_index(table, name) for name in later),  # indexes later migrations (m0016) made on it
                migrator.drop_index(table, f"{table}_project"), migrator.drop_column(table, "project"))
    SchemaVersion.delete().where(SchemaVersion.version == 3).execute()


def test_projects_are_added_to_a_database_written_before_them(database_url: str) -> None:
    db = database.obj
    _back_to_version_2(db)
    assert "project" not in {c.name for c in db.get_columns("model")}
    db.execute_sql('INSERT INTO "model" (id, name, architecture, task, labels, configuration, status, metrics, created_at, updated_at) '
                   "VALUES ('m1', 'old', 'sleep', 'diagnostic', '[]', '{}', 'trained', '{}', 1.0, 1.0)")
    service = Service.create(name="mgmt-train-sleep", architecture="sleep")
    db.execute_sql('INSERT INTO "execution" (id, name, model_id, service_id, function, input, status, attempt, max_attempts, '
                   "timeout_s, drain_time_s, on_reset, run_as_process, stop_requested, progress, message, created_at) "
                   f"VALUES ('e1', 'old', 'm1', '{service.name}', 'noop', '{{}}', 'success', 1, 3, 60, 60, 'rerun', "
                   f"{'true' if 'postgres' in database_url else '1'}, {'false' if 'postgres' in database_url else '0'}, 100, '', 1.0)")

    assert migrate_all() == [3]
    assert Model.get_by_id("m1").project == DEFAULT_PROJECT and Execution.get_by_id("e1").project == DEFAULT_PROJECT
    assert Project.get_by_id(DEFAULT_PROJECT) and Token.select().count() == 0
    assert migrate_all() == []  # idempotent


def test_registration_columns_are_added_to_a_database_written_before_them(database_url: str) -> None:
    db = database.obj
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.drop_column("instance", "registration_hash"), migrator.drop_column("instance", "registration_expires_at"))
    SchemaVersion.delete().where(SchemaVersion.version == 6).execute()
    service = Service.create(name="mgmt-train-sleep", architecture="sleep")
    db.execute_sql("INSERT INTO \"instance\" (id, service_id, backend, host, status, started_at, restart_count, running) "
                   f"VALUES ('i1', '{service.name}', 'process', 'h', 'running', 1.0, 0, '[]')")

    assert migrate_all() == [6]
    row = Instance.get_by_id("i1")
    assert (row.status, row.registration_hash, row.registration_expires_at) == ("running", None, None)
    assert migrate_all() == []


def test_migration_numbers_may_have_gaps_and_a_lower_one_merged_later_is_still_applied(database_url: str) -> None:
    """Two branches add 5 and 6 at once: a database that got 6 first gets 5 when it arrives."""
    ran: list[int] = []

    def step(number: int) -> Any:
        return lambda db, migrator: ran.append(number)

    assert migrate_all(migrations=[(1007, step(1007)), (1009, step(1009))]) == [1007, 1009]
    assert migrate_all(migrations=[(1009, step(1009)), (1008, step(1008)), (1007, step(1007))]) == [1008]
    assert ran == [1007, 1009, 1008]
    with pytest.raises(ValueError, match="unique"):
        migrate_all(migrations=[(1010, step(1010)), (1010, step(1010))])
    assert {row.version for row in SchemaVersion.select()} >= {1, 2, 3, 4, 5, 6, 7, 1007, 1008, 1009}


def test_project_limits_are_added_to_a_database_written_before_them(database_url: str) -> None:
    db = database.obj
    migrator = SchemaMigrator.from_database(db)
    Project.create(name="team", description="older")
    migrate(migrator.drop_column("project", "max_queued"), migrator.drop_column("project", "max_running"))
    SchemaVersion.delete().where(SchemaVersion.version == 5).execute()

    assert migrate_all() == [5]
    team = Project.get_by_id("team")
    assert (team.description, team.max_queued, team.max_running) == ("older", None, None)
    assert migrate_all() == []
