"""Reruns with changes: an execution records where its next attempt resumes."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import Execution


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    table = Execution._meta.table_name
    if "resume_from" not in {column.name for column in db.get_columns(table)}:
        migrate(migrator.add_column(table, "resume_from", peewee.CharField(max_length=10, null=True)))
