"""Each instance's instance type: the one its service had when the scheduler started it, so that
an instance of a type the service no longer has is retired (drained) and claims nothing more.
Instances started before keep None (not known)."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import Instance


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    table = Instance._meta.table_name
    if "instance_type" not in {column.name for column in db.get_columns(table)}:
        migrate(migrator.add_column(table, "instance_type", peewee.CharField(max_length=50, null=True)))
