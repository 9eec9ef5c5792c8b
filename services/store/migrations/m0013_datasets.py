"""Registered data sets: their versions and manifests, aliases, shares, uses by executions and constraints."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from trainfaas.services.store.records import DATASET_ENTITIES


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    db.create_tables(DATASET_ENTITIES, safe=True)
