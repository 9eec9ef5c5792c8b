"""Per-instance registration tokens: the hash of an instance's one-time registration token and
when it expires, on the instance's row."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import Instance


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    # A database created by this version's first migration already has the columns.
    table = Instance._meta.table_name
    present = {c.name for c in db.get_columns(table)}
    columns = {"registration_hash": peewee.CharField(max_length=64, null=True),
               "registration_expires_at": peewee.DoubleField(null=True)}
    operations = [migrator.add_column(table, name, field) for name, field in columns.items() if name not in present]
    if operations:
        migrate(*operations)
