"""The first schema: every entity of the core pipeline."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import ENTITIES, Artifact, Execution, Model, Service


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    # Tables are created from today's models; the columns later migrations add are dropped again
    # so that those migrations can add them, exactly as on a database created before them.
    later_columns = {Service: ("error_reason",), Model: ("base_model", "cloned_from", "dataset", "source_execution", "source_step"),
                     Execution: ("resume_from", "keep_checkpoints", "removed"), Artifact: ("uid", "is_best")}
    db.create_tables(ENTITIES)
    for entity, columns in later_columns.items():
        table = entity._meta.table_name
        for column in columns:
            if column in {c.name for c in db.get_columns(table)}:
                migrate(migrator.drop_column(table, column))
