"""Resource usage per attempt, and each execution's place in its service's queue.

Attempts get the summary of what their work process used (peak resident memory, mean CPU, peak
GPU memory, mean GPU utilisation, how many samples were taken). Executions get ``queued_at``,
when they last entered pending or rerun, indexed with their service and status so that an
execution's position in its queue is one cheap COUNT; the executions already waiting keep their
creation time as their place.
"""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from trainfaas.services.store.records import Attempt, Execution

ATTEMPT_COLUMNS = {
    "peak_rss_mb": peewee.DoubleField(null=True),
    "mean_cpu_percent": peewee.DoubleField(null=True),
    "peak_gpu_mem_mb": peewee.DoubleField(null=True),
    "mean_gpu_util": peewee.DoubleField(null=True),
    "usage_samples": peewee.IntegerField(null=True),
}
QUEUE_INDEX = ("service_id", "status", "queued_at")


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    attempt = Attempt._meta.table_name
    present = {column.name for column in db.get_columns(attempt)}
    steps = [migrator.add_column(attempt, name, field) for name, field in ATTEMPT_COLUMNS.items() if name not in present]
    execution = Execution._meta.table_name
    if "queued_at" not in {column.name for column in db.get_columns(execution)}:
        steps.append(migrator.add_column(execution, "queued_at", peewee.DoubleField(null=True)))
    if steps:
        migrate(*steps)
    Execution.update(queued_at=Execution.created_at).where(Execution.queued_at.is_null()).execute()
    if QUEUE_INDEX not in {tuple(index.columns) for index in db.get_indexes(execution)}:
        migrate(migrator.add_index(execution, QUEUE_INDEX, False))
