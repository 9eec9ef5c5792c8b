"""Migration 14 brings attempts' usage columns and executions' place in the queue to an older database."""
from __future__ import annotations

from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.database import database
from trainfaas.services.store.migrations import SchemaVersion
from trainfaas.services.store.migrations import migrate as migrate_all
from trainfaas.services.store.migrations.m0014_usage import ATTEMPT_COLUMNS, QUEUE_INDEX
from trainfaas.services.store.records import Attempt, Execution, Service


def test_usage_columns_and_queue_places_are_added_to_a_database_written_before_them(database_url: str) -> None:
    db = database.obj
    migrator = SchemaMigrator.from_database(db)
    index = next(i.name for i in db.get_indexes("execution") if tuple(i.columns) == QUEUE_INDEX)
    migrate(migrator.drop_index("execution", index), migrator.drop_column("execution", "queued_at"),
            *(migrator.drop_column("attempt", name) for name in ATTEMPT_COLUMNS))
    SchemaVersion.delete().where(SchemaVersion.version == 14).execute()
    service = Service.create(name="mgmt-train-sleep", architecture="sleep")
    for name, created in (("e1", 5.0), ("e2", 3.0)):
        db.execute_sql('INSERT INTO "execution" (id, project, name, service_id, function, input, status, attempt, max_attempts, '
                       "timeout_s, drain_time_s, on_reset, run_as_process, stop_requested, progress, message, created_at) "
                       f"VALUES ('{name}', 'default', 'old', '{service.name}', 'noop', '{{}}', 'pending', 1, 3, 60, 60, 'rerun', "
                       f"{'true' if 'postgres' in database_url else '1'}, {'false' if 'postgres' in database_url else '0'}, 0, '', {created})")
    db.execute_sql('INSERT INTO "attempt" (execution_id, number, instance, started_at) VALUES (\'e1\', 1, \'i1\', 1.0)')

    assert migrate_all() == [14]
    assert [(row.id, row.queued_at) for row in Execution.select().order_by(Execution.id)] == [("e1", 5.0), ("e2", 3.0)]
    assert QUEUE_INDEX in {tuple(i.columns) for i in db.get_indexes("execution")}
    attempt = Attempt.get()
    assert (attempt.peak_rss_mb, attempt.usage_samples) == (None, None)
    assert migrate_all() == []
