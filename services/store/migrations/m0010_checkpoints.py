"""Checkpoints that become models, and executions removed from training.

A checkpoint artifact gets an id people can type (``uid``, unique prefixes resolve) and whether it
is the best one (``is_best``; earlier ``best.pt`` rows are marked so); an execution gets how many
checkpoints it keeps (``keep_checkpoints``, None: the server's default) and whether it was removed
from training (``removed``); a model records the execution and step of the checkpoint it was made
from (``source_execution``, ``source_step``).
"""
from __future__ import annotations

import uuid

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import Artifact, Execution, Model


def _flag() -> peewee.BooleanField:
    """A boolean that existing rows, and rows written without it, take as false. Nullable, as
    SQLite adds only such columns without rebuilding the table (which would cascade to its rows)."""
    return peewee.BooleanField(null=True, constraints=[peewee.SQL("DEFAULT false")])


COLUMNS: dict[type[peewee.Model], tuple[tuple[str, peewee.Field], ...]] = {
    Artifact: (("uid", peewee.CharField(max_length=32, null=True)), ("is_best", _flag())),
    Execution: (("keep_checkpoints", peewee.IntegerField(null=True)), ("removed", _flag())),
    Model: (("source_execution", peewee.CharField(max_length=32, null=True)), ("source_step", peewee.IntegerField(null=True))),
}


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    for record, columns in COLUMNS.items():
        table = record._meta.table_name
        present = {column.name for column in db.get_columns(table)}
        for name, field in columns:
            if name not in present:
                migrate(migrator.add_column(table, name, field))
    for row in Artifact.select(Artifact.id, Artifact.path).where(Artifact.uid.is_null()):
        Artifact.update(uid=uuid.uuid4().hex, is_best=str(row.path).endswith("best.pt")).where(Artifact.id == row.id).execute()
    table = Artifact._meta.table_name
    if "artifact_uid" not in {index.name for index in db.get_indexes(table)}:
        migrate(migrator.add_index(table, ("uid",), True))
