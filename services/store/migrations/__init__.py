"""Schema migrations, applied in order by :func:`migrate`.

Add a module ``mNNNN_what.py`` with ``def apply(db, migrator)`` and list it in ``MIGRATIONS``;
use ``playhouse.migrate`` operations through ``migrator`` for changes to existing tables.

Numbers need not be contiguous: each one is applied once, by its number, in ascending order, and
a number missing from the list is simply not applied. So migrations written on two branches at
once (5 and 6) merge in either order: a database that already has 6 gets 5 on its next start.
Such migrations must therefore not depend on each other.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import peewee
from playhouse.migrate import SchemaMigrator

from trainfaas.services.store.database import database
from trainfaas.services.store.migrations import (
    m0001_initial,
    m0002_autoscaler,
    m0003_projects,
    m0004_lineage,
    m0005_project_limits,
    m0006_registration,
    m0007_blueprints,
    m0008_model_clones,
    m0009_resume_from,
    m0010_checkpoints,
    m0011_model_imports,
    m0013_datasets,
    m0014_usage,
    m0015_webhooks,
    m0016_listing_indexes,
    m0017_instance_types,
)

log = logging.getLogger(__name__)

Migration = Callable[[peewee.Database, SchemaMigrator], None]


class SchemaVersion(peewee.Model):
    version = peewee.IntegerField(primary_key=True)

    class Meta:
        database = database
        table_name = "schema_version"


MIGRATIONS: list[tuple[int, Migration]] = [
    (1, m0001_initial.apply),
    (2, m0002_autoscaler.apply),
    (3, m0003_projects.apply),
    (4, m0004_lineage.apply),
    (5, m0005_project_limits.apply),
    (6, m0006_registration.apply),
    (7, m0007_blueprints.apply),
    (8, m0008_model_clones.apply),
    (9, m0009_resume_from.apply),
    (10, m0010_checkpoints.apply),
    (11, m0011_model_imports.apply),
    (13, m0013_datasets.apply),
    (14, m0014_usage.apply),
    (15, m0015_webhooks.apply),
    (16, m0016_listing_indexes.apply),
    (17, m0017_instance_types.apply),
]


def migrate(db: peewee.Database | None = None, migrations: list[tuple[int, Migration]] | None = None) -> list[int]:
    """Apply every migration (default: ``MIGRATIONS``) not applied yet, in order; return the
    versions applied. Idempotent; each migration runs in its own transaction."""
    db = db or database.obj
    with db.atomic():
        db.create_tables([SchemaVersion], safe=True)
        done = {row.version for row in SchemaVersion.select()}
    steps = MIGRATIONS if migrations is None else migrations
    versions = [version for version, _ in steps]
    if len(set(versions)) != len(versions):
        raise ValueError(f"migration numbers must be unique: {versions}")
    applied = []
    for version, step in sorted(steps, key=lambda entry: entry[0]):
        if version in done:
            continue
        with db.atomic():
            step(db, SchemaMigrator.from_database(db))
            SchemaVersion.create(version=version)
        log.info("applied migration %04d", version)
        applied.append(version)
    return applied
