"""Autoscaler: service events and the scheduler's error reason on services."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import Service, ServiceEvent


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    migrate(migrator.add_column(Service._meta.table_name, "error_reason", peewee.TextField(null=True)))
    db.create_tables([ServiceEvent])
