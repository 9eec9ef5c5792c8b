"""Projects and API tokens; models and executions belong to a project (``default`` for existing rows)."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import DEFAULT_PROJECT, Execution, Model, Project, Token


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    # A database created by this version's first migration already has the columns.
    for entity in (Model, Execution):
        table = entity._meta.table_name
        if "project" not in {c.name for c in db.get_columns(table)}:
            migrate(
                migrator.add_column(table, "project", peewee.CharField(max_length=100, default=DEFAULT_PROJECT)),
                migrator.add_index(table, ("project",)),
            )
    db.create_tables([Project, Token])
    Project.get_or_create(name=DEFAULT_PROJECT, defaults={"description": "Created by the migration for single-user setups."})
