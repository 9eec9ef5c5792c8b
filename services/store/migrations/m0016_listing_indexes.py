"""Indexes for listing executions newest first under a filter.

The executions list orders by ``(created_at, id)``, newest first, and filters by project, status,
service or model. Each of those gets an index that ends in the list's order, so a page under a
filter reads its 50 rows from the index instead of sorting every matching row. On PostgreSQL the
search by name (``q``, a case-insensitive substring) gets a trigram index when the ``pg_trgm``
extension can be had (it ships with PostgreSQL; creating it needs a role allowed to, otherwise the
search reads the table as before and the log says so).
"""
from __future__ import annotations

import logging

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import Execution

log = logging.getLogger("trainfaas.migrations")

LIST_INDEXES = (("project", "created_at", "id"), ("status", "created_at", "id"),
                ("service_id", "created_at", "id"), ("model_id", "created_at", "id"))
TRIGRAM_INDEX = "execution_name_trigram"


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    table = Execution._meta.table_name
    present = {tuple(index.columns) for index in db.get_indexes(table)}
    missing = [columns for columns in LIST_INDEXES if columns not in present]
    if missing:
        migrate(*(migrator.add_index(table, columns, False) for columns in missing))
    if isinstance(db, peewee.PostgresqlDatabase):
        try:
            with db.atomic():
                db.execute_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                db.execute_sql(f'CREATE INDEX IF NOT EXISTS {TRIGRAM_INDEX} ON "{table}" USING gin (name gin_trgm_ops)')
        except peewee.DatabaseError as error:
            log.warning("no trigram index for the search by execution name (%s): the search reads the table", str(error).strip())
