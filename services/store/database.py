"""The database: one peewee proxy, bound at start-up from the settings' URL.

The schema is brought up to date by :func:`trainfaas.services.store.migrations.migrate`.
"""
from __future__ import annotations

from urllib.parse import urlparse

import peewee
from playhouse.db_url import connect

from trainfaas.services.core.errors import ConfigError

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
        raise ConfigError(
            f"unsupported database URL scheme {scheme!r}",
            {"TRAINFAAS_DATABASE_URL": "sqlite:///path/to/file.db or postgresql://user@host/db"},
        )
    database.initialize(db)
    return db
