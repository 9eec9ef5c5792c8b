"""Clones: a model may copy another (without its weights), and keep the data set its trainings default to."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import Model


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    table = Model._meta.table_name
    present = {column.name for column in db.get_columns(table)}
    for name, field in (("cloned_from", peewee.CharField(max_length=32, null=True)), ("dataset", peewee.TextField(null=True))):
        if name not in present:
            migrate(migrator.add_column(table, name, field))
