"""The first schema: every entity of the core pipeline."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    from services.models import ENTITIES, Service

    # Later migrations add columns to Service; create it without them so that they can.
    db.create_tables(ENTITIES)
    for column in ("error_reason",):
        if column in {c.name for c in db.get_columns(Service._meta.table_name)}:
            from playhouse.migrate import migrate

            migrate(migrator.drop_column(Service._meta.table_name, column))
