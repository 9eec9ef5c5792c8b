"""Blueprints: named training configurations of a project."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from trainfaas.services.store.records import Blueprint


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    db.create_tables([Blueprint])
