"""Per-project quotas: the most waiting and running executions an admin allows a project (null: the settings' defaults)."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import Project


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    # A database whose projects table was created by this version's m0003 already has the columns.
    table = Project._meta.table_name
    present = {c.name for c in db.get_columns(table)}
    migrate(*(migrator.add_column(table, column, peewee.IntegerField(null=True))
              for column in ("max_queued", "max_running") if column not in present))
