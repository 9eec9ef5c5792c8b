"""Schema migrations, applied in order by :func:`trainfaas.services.store.database.migrate`.

Add a module ``NNNN_what.py`` with ``def apply(db, migrator)`` and list it below; use
``playhouse.migrate`` operations through ``migrator`` for changes to existing tables.
"""
from __future__ import annotations

import importlib

import peewee
from trainfaas.services.store.database import Migration, database


class SchemaVersion(peewee.Model):
    version = peewee.IntegerField(primary_key=True)

    class Meta:
        database = database
        table_name = "schema_version"


def _load(name: str) -> Migration:
    return importlib.import_module(f"trainfaas.services.store.migrations.{name}").apply  # type: ignore[no-any-return]


MIGRATIONS: list[tuple[int, Migration]] = [
    (1, _load("m0001_initial")),
    (2, _load("m0002_autoscaler")),
    (3, _load("m0003_projects")),
    (4, _load("m0004_lineage")),
]
