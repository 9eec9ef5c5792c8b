"""The database: one peewee proxy, bound at start-up from the settings' URL.

The schema is brought up to date by :func:`trainfaas.services.store.migrations.migrate`.
"""
from __future__ import annotations

import time
from typing import Any
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


_MIXED: dict[tuple[type, type], type] = {}


def _mixed(mixin: type, base: type) -> type:
    """``base`` (a peewee database class) with ``mixin``'s behaviour over it, one class per pair."""
    if (mixin, base) not in _MIXED:
        _MIXED[mixin, base] = type(f"{mixin.__name__.strip('_')}{base.__name__}", (mixin, base), {})
    return _MIXED[mixin, base]


def _sqlite(url: str, **options: object) -> peewee.Database:
    """The SQLite database of ``url`` (its scheme's peewee class), its transactions begun IMMEDIATE."""
    scheme = urlparse(url).scheme
    base = schemes.get(scheme)
    if base is None:
        raise ConfigError(f"unsupported database URL scheme {scheme!r}", {"TRAINFAAS_DATABASE_URL": "sqlite:///path/to/file.db"})
    return _mixed(_BeginImmediate, base)(**{**parse(url), **options})  # type: ignore[no-any-return]


class _RecentlyAlive:
    """PostgreSQL pool: a connection handed back less than :data:`ALIVE_BYPASS_S` ago is taken again
    as it is. peewee's pool checks every connection it hands out with a ``SELECT 1`` round trip,
    which costs the API one round trip per request; a connection just used, idle and open has
    nothing to check (as HikariCP's ``aliveBypassWindowMs``). One idle longer is checked as before."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._returned: dict[int, float] = {}  # connection key -> when it was handed back

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        self._returned[self.conn_key(conn)] = time.monotonic()  # type: ignore[attr-defined]
        super()._close(conn, close_conn)  # type: ignore[misc]

    def _close_raw(self, conn: Any) -> None:  # it leaves the pool: forgotten
        self._returned.pop(self.conn_key(conn), None)  # type: ignore[attr-defined]
        super()._close_raw(conn)  # type: ignore[misc]

    def _is_closed(self, conn: Any) -> bool:
        returned = self._returned.get(self.conn_key(conn))  # type: ignore[attr-defined]
        adapter = self._adapter  # type: ignore[attr-defined]
        if (returned is not None and time.monotonic() - returned < ALIVE_BYPASS_S and not conn.closed
                and adapter.txn_status(conn) == adapter.txn_idle):
            return False
        self._returned.pop(self.conn_key(conn), None)  # type: ignore[attr-defined]
        return super()._is_closed(conn)  # type: ignore[misc,no-any-return]


ALIVE_BYPASS_S = 0.5
"""How recently a pooled PostgreSQL connection was handed back for it to be taken again unchecked."""


def _postgresql(url: str, scheme: str, **pool: object) -> peewee.Database:
    """The pooled PostgreSQL database of ``url``, checking its connections as :class:`_RecentlyAlive` says."""
    return _mixed(_RecentlyAlive, schemes[f"{scheme}+pool"])(**parse(url), **pool)  # type: ignore[no-any-return]


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
        db = _postgresql(url, scheme, **pool) if pooled else connect(url)
    else:
        raise ConfigError(
            f"unsupported database URL scheme {scheme!r}",
            {"TRAINFAAS_DATABASE_URL": "sqlite:///path/to/file.db or postgresql://user@host/db"},
        )
    database.initialize(db)
    return db


BULK_ROWS = 500
"""Rows per INSERT of :func:`insert_rows`: 500 rows of 30 columns stay under SQLite's 32,766 parameters."""


Statement = tuple[str, list[object]]
"""SQL and its parameters."""


def insert_rows(model: type[peewee.Model], rows: list[dict[str, object]]) -> None:
    """Insert ``rows`` into ``model``'s table inside the caller's transaction (see :func:`inserts`)."""
    run_together(inserts(model, rows))


def inserts(model: type[peewee.Model], rows: list[dict[str, object]]) -> list[Statement]:
    """The statements that insert ``rows`` (field name -> value; a field left out takes its default)
    into ``model``'s table, :data:`BULK_ROWS` rows each. Each value goes through its field's
    ``db_value`` once: peewee's insert_many builds its SQL value by value, which costs a bulk
    enqueue more than the insert itself."""
    fields = [field for field in model._meta.sorted_fields if not isinstance(field, peewee.AutoField)]
    defaults = model._meta.defaults
    columns = ", ".join(f'"{field.column_name}"' for field in fields)
    group = f"({', '.join([database.param] * len(fields))})"
    statements: list[Statement] = []
    for start in range(0, len(rows), BULK_ROWS):
        chunk = rows[start:start + BULK_ROWS]
        values: list[object] = []
        for row in chunk:
            for field in fields:
                value = row[field.name] if field.name in row else defaults.get(field)
                values.append(field.db_value(value() if callable(value) else value))
        statements.append((f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES {", ".join([group] * len(chunk))}', values))
    return statements


def run_together(statements: list[Statement]) -> Any:
    """Run ``statements`` in order; the cursor of the last. On PostgreSQL in one round trip (its driver
    sends several statements as one query); on SQLite one after another (one statement per call)."""
    db = database.obj
    if isinstance(db, peewee.SqliteDatabase) or len(statements) < 2:
        cursor = None
        for sql, params in statements:
            cursor = db.execute_sql(sql, params)
        return cursor
    return db.execute_sql("; ".join(sql for sql, _ in statements), [value for _, params in statements for value in params])
