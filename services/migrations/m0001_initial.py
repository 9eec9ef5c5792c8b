"""The first schema: every entity as of the core pipeline."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    from services.models import ENTITIES

    db.create_tables(ENTITIES)
