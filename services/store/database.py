"""The database: one peewee proxy, bound at start-up from the settings' URL.

The schema is brought up to date by :func:`trainfaas.services.store.migrations.migrate`.
"""
from __future__ import annotations

from urllib.parse import urlparse

import peewee
from playhouse.db_url import connect, parse, schemes

from trainfaas.services.core.errors import ConfigError

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {"journal_mode": "wal", "busy_timeout": 15000, "foreign_keys": 1, "synchronous": "normal"}
"""busy_timeout: how long (ms) a connection waits for another one's write lock before it fails as
``database is locked``."""


class _BeginImmediate:
    """SQLite: every transaction begins IMMEDIATE, holding the write lock from its BEGIN, unless
    its caller names another lock type. A deferred transaction (a plain BEGIN) starts as a reader
    and takes the write lock at its first write; if another connection has committed since its
    first read, SQLite refuses that upgrade at once (``database is locked``) without waiting for
    busy_timeout, since its snapshot is stale. An IMMEDIATE BEGIN waits for the lock like any write."""

    def begin(self, lock_type: str | None = None) -> None:
        super().begin(lock_type or "IMMEDIATE")  # type: ignore[misc]


_IMMEDIATE: dict[type, type] = {}


def _sqlite(url: str, **options: object) -> peewee.Database:
    """The SQLite database of ``url`` (its scheme's peewee class), its transactions begun IMMEDIATE."""
    scheme = urlparse(url).scheme
    base = schemes.get(scheme)
    if base is None:
        raise ConfigError(f"unsupported database URL scheme {scheme!r}", {"TRAINFAAS_DATABASE_URL": "sqlite:///path/to/file.db"})
    if base not in _IMMEDIATE:
        _IMMEDIATE[base] = type(f"Immediate{base.__name__}", (_BeginImmediate, base), {})
    return _IMMEDIATE[base](**{**parse(url), **options})  # type: ignore[no-any-return]


POOL_SIZE = 32
"""Connections a pooled database (:func:`open_database` with ``pooled``) keeps per process, at most."""


def open_database(url: str, pooled: bool = False) -> peewee.Database:
    """Connect the proxy to ``url`` (sqlite:///path or postgresql://...) and return the database.

    ``pooled``: ``close()`` hands the connection back to a pool of :data:`POOL_SIZE` and the next
    ``connect()`` takes it again (a connection idle for 5 minutes is closed). The API connects
    and closes once per request: unpooled, that costs a PostgreSQL request a new connection
    (TCP and authentication), and a SQLite one an open, its pragmas and a close (which, for the
    last connection, checkpoints the WAL) -- more than an enqueue's own statements.

    SQLite: transactions begin IMMEDIATE (see :class:`_BeginImmediate`); PostgreSQL's are as peewee begins them."""
    scheme = urlparse(url).scheme
    pool: dict[str, object] = {"max_connections": POOL_SIZE, "stale_timeout": 300, "timeout": 60} if pooled else {}
    if scheme.startswith("sqlite"):
        db = _sqlite(url.replace("sqlite:", "sqlite+pool:", 1) if pooled else url, pragmas=SQLITE_PRAGMAS, check_same_thread=False,
                     **pool)
    elif scheme in ("postgres", "postgresql", "postgresext"):
        db = connect(url.replace(f"{scheme}:", f"{scheme}+pool:", 1) if pooled else url, **pool)
    else:
        raise ConfigError(
            f"unsupported database URL scheme {scheme!r}",
            {"TRAINFAAS_DATABASE_URL": "sqlite:///path/to/file.db or postgresql://user@host/db"},
        )
    database.initialize(db)
    return db


BULK_ROWS = 500
"""Rows per INSERT of :func:`insert_rows`: 500 rows of 30 columns stay under SQLite's 32,766 parameters."""


def insert_rows(model: type[peewee.Model], rows: list[dict[str, object]]) -> None:
    """Insert ``rows`` (field name -> value; a field left out takes its default) into ``model``'s
    table, :data:`BULK_ROWS` rows per statement, inside the caller's transaction. Each value goes
    through its field's ``db_value`` once: peewee's insert_many builds its SQL value by value,
    which costs a bulk enqueue more than the insert itself."""
    fields = [field for field in model._meta.sorted_fields if not isinstance(field, peewee.AutoField)]
    defaults = model._meta.defaults
    columns = ", ".join(f'"{field.column_name}"' for field in fields)
    group = f"({', '.join([database.param] * len(fields))})"
    for start in range(0, len(rows), BULK_ROWS):
        chunk = rows[start:start + BULK_ROWS]
        values: list[object] = []
        for row in chunk:
            for field in fields:
                value = row[field.name] if field.name in row else defaults.get(field)
                values.append(field.db_value(value() if callable(value) else value))
        sql = f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES {", ".join([group] * len(chunk))}'
        database.execute_sql(sql, values)
