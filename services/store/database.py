"""The database: one peewee proxy bound at start-up from the settings' URL, plus migrations."""
from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlparse

import peewee
from playhouse.db_url import connect
from playhouse.migrate import SchemaMigrator

log = logging.getLogger(__name__)

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {"journal_mode": "wal", "busy_timeout": 15000, "foreign_keys": 1, "synchronous": "normal"}


def open_database(url: str) -> peewee.Database:
    """Connect the proxy to ``url`` (sqlite:///path or postgresql://...) and return the database."""
    scheme = urlparse(url).scheme
    if scheme.startswith("sqlite"):
        db = connect(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    elif scheme in ("postgres", "postgresql", "postgresext"):
        db = connect(url)
    else:
        from trainfaas.services.core.errors import ConfigError

        raise ConfigError(
            f"unsupported database URL scheme {scheme!r}",
            {"TRAINFAAS_DATABASE_URL": "sqlite:///path/to/file.db or postgresql://user@host/db"},
        )
    database.initialize(db)
    return db


def migrate(db: peewee.Database | None = None) -> list[int]:
    """Apply every migration not applied yet, in order; return the versions applied. Idempotent."""
    from trainfaas.services.store.migrations import MIGRATIONS, SchemaVersion

    db = db or database.obj
    with db.atomic():
        db.create_tables([SchemaVersion], safe=True)
        done = {row.version for row in SchemaVersion.select()}
    applied = []
    for version, step in MIGRATIONS:
        if version in done:
            continue
        with db.atomic():
            step(db, SchemaMigrator.from_database(db))
            SchemaVersion.create(version=version)
        log.info("applied migration %04d", version)
        applied.append(version)
    return applied


Migration = Callable[[peewee.Database, SchemaMigrator], None]
