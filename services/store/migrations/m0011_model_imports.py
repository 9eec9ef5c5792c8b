"""Imported models: where their weights came from, and a model's status message (a failed training that kept earlier weights)."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import Model


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    table = Model._meta.table_name
    present = {column.name for column in db.get_columns(table)}
    for name in ("imported_from", "status_message"):
        if name not in present:
            migrate(migrator.add_column(table, name, peewee.TextField(null=True)))
