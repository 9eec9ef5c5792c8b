"""Fine-tuning: a model may start from the weights of an earlier model (its base model)."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import Model


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    migrate(migrator.add_column(Model._meta.table_name, "base_model", peewee.CharField(max_length=32, null=True)))
