"""Entities. The database is the record: every execution exists here before its queue entry.

Times are UTC epoch seconds (float) so SQLite and PostgreSQL store and compare them alike.
Statuses are stored as the values of trainfaas.services.core.statuses' enums. Only
:mod:`trainfaas.services.control.transitions` writes ``Execution.status``, only
:mod:`trainfaas.services.control.instances` writes ``Instance.status``, and only
:mod:`trainfaas.services.control.models` writes ``Model.status``.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import peewee

from trainfaas.services.core.errors import NotFound
from trainfaas.services.core.statuses import ExecutionStatus, InstanceStatus, ModelStatus
from trainfaas.services.store.database import database


def new_id() -> str:
    return uuid.uuid4().hex


def now_s() -> float:
    return time.time()


class JSONField(peewee.TextField):
    """JSON stored as text: portable across SQLite and PostgreSQL."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


_PREPARED: dict[tuple[str, type], tuple[str, list[Any], list[tuple[int, int]]]] = {}


def prepared(name: str, build: Callable[..., peewee.Query], *values: Any) -> tuple[str, list[Any]]:
    """The SQL and parameters of the query ``build(*slots)`` with ``values`` in its slots, its SQL
    built once per ``name`` and kind of database (a hot query: peewee builds SQL anew each time, and
    building costs more than running it on SQLite). ``values`` go as given, unconverted: plain
    strings and numbers of the columns they are compared with."""
    db = database.obj
    key = (name, type(db))
    if key not in _PREPARED:
        slots = [f"\x00slot{index}\x00" for index in range(len(values))]
        sql, params = build(*(peewee.Value(slot, converter=False) for slot in slots)).sql()
        _PREPARED[key] = (sql, list(params), [(at, slots.index(param)) for at, param in enumerate(params) if param in slots])
    sql, params, places = _PREPARED[key]
    params = list(params)
    for at, index in places:
        params[at] = values[index]
    return sql, params


def write_prepared(name: str, build: Callable[..., peewee.Query], *values: Any) -> int:
    """Run the write ``build(*slots)`` with ``values`` in its slots, its SQL built once (see
    :func:`prepared`); the number of rows it changed. ``values`` go unconverted: convert them with
    their fields' ``db_value`` first."""
    sql, params = prepared(name, build, *values)
    return database.rows_affected(database.execute_sql(sql, params))  # type: ignore[no-any-return]


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False

    @classmethod
    def by_key(cls, field: peewee.Field, value: Any, missing: str | None = None) -> Any:
        """The row whose ``field`` (unique) is ``value``: ``get_or_none(field == value)`` without
        building the query's SQL again each time (see :func:`prepared`: a hot lookup, such as a
        request's token or service). None when there is none, or NotFound with the message ``missing``."""
        sql, params = prepared(f"{cls.__name__}.{field.name}", lambda key: cls.select().where(field == key).limit(1), field.db_value(value))
        row = next(iter(cls.raw(sql, *params)), None)
        if row is None and missing is not None:
            raise NotFound(missing)
        return row

    @classmethod
    def get_or_raise(cls, where: Any, missing: str) -> Any:
        """The one row matching ``where``, or NotFound with the message ``missing``."""
        row = cls.get_or_none(where)
        if row is None:
            raise NotFound(missing)
        return row


DEFAULT_PROJECT = "default"


class Model(BaseModel):
    id = peewee.CharField(primary_key=True, default=new_id, max_length=32)
    # Projects are referenced by name rather than a foreign key so that the first migration can
    # create this table before the projects table exists (see m0003_projects).
    project = peewee.CharField(max_length=100, default=DEFAULT_PROJECT, index=True)
    name = peewee.CharField(max_length=200, index=True)
    architecture = peewee.CharField(max_length=100)
    task = peewee.CharField(max_length=50)
    labels = JSONField(default=list)
    configuration = JSONField(default=dict)
    status = peewee.CharField(max_length=20, default=ModelStatus.CREATED.value)
    artifact_path = peewee.TextField(null=True)
    metrics = JSONField(default=dict)
    created_at = peewee.DoubleField(default=now_s)
    updated_at = peewee.DoubleField(default=now_s)
    # Fine-tuning: the id of the model whose trained weights training starts from (migration 3).
    base_model = peewee.CharField(max_length=32, null=True)
    # A clone: the model this one copied (without weights), and the data set its trainings default to (migration 8).
    cloned_from = peewee.CharField(max_length=32, null=True)
    dataset = peewee.TextField(null=True)
    # A model made from a checkpoint: the execution and step it came from (migration 10).
    source_execution = peewee.CharField(max_length=32, null=True)
    source_step = peewee.IntegerField(null=True)
    # Imported weights: what they came from (an uploaded file's name or a path), and what the status
    # means beyond its word (a failed training that left the earlier weights in place) (migration 11).
    imported_from = peewee.TextField(null=True)
    status_message = peewee.TextField(null=True)


SCALING_TYPES = ("fixed", "autoscale")
ON_RESET = ("rerun", "fail")


class Service(BaseModel):
    name = peewee.CharField(primary_key=True, max_length=150)
    architecture = peewee.CharField(max_length=100)
    # runtime
    concurrency = peewee.IntegerField(default=1)
    instance_type = peewee.CharField(max_length=50, default="default")
    backend = peewee.CharField(max_length=20, default="process")
    # autoscaler
    scaling_type = peewee.CharField(max_length=20, default="fixed")
    min_instances = peewee.IntegerField(default=1)
    max_instances = peewee.IntegerField(default=1)
    queue_length = peewee.IntegerField(default=1)
    polling_interval_s = peewee.DoubleField(default=10.0)
    cooldown_s = peewee.DoubleField(default=300.0)
    paused = peewee.BooleanField(default=False)
    # execution defaults, copied into each execution and overridable at enqueue
    timeout_s = peewee.DoubleField(default=6 * 3600.0)
    drain_time_s = peewee.DoubleField(default=600.0)
    on_reset = peewee.CharField(max_length=10, default="rerun")
    max_attempts = peewee.IntegerField(default=3)
    run_as_process = peewee.BooleanField(default=True)
    error_reason = peewee.TextField(null=True)  # set by the scheduler while instances crash-loop
    created_at = peewee.DoubleField(default=now_s)
    updated_at = peewee.DoubleField(default=now_s)


class ServiceEvent(BaseModel):
    """One scaling decision: what the scheduler saw, what it wanted and what it did."""

    service = peewee.ForeignKeyField(Service, backref="events", on_delete="CASCADE")
    at = peewee.DoubleField(default=now_s, index=True)
    queued = peewee.IntegerField()
    running = peewee.IntegerField()
    instances = peewee.IntegerField()
    desired = peewee.IntegerField()
    action = peewee.CharField(max_length=20)
    reason = peewee.TextField(default="")


class Execution(BaseModel):
    id = peewee.CharField(primary_key=True, default=new_id, max_length=32)
    project = peewee.CharField(max_length=100, default=DEFAULT_PROJECT, index=True)
    name = peewee.CharField(max_length=200, default="")
    model = peewee.ForeignKeyField(Model, null=True, backref="executions", on_delete="SET NULL")
    service = peewee.ForeignKeyField(Service, backref="executions")
    function = peewee.CharField(max_length=100)
    input = JSONField(default=dict)
    status = peewee.CharField(max_length=20, default=ExecutionStatus.CREATED.value, index=True)
    attempt = peewee.IntegerField(default=1)
    max_attempts = peewee.IntegerField(default=3)
    timeout_s = peewee.DoubleField()
    drain_time_s = peewee.DoubleField()
    on_reset = peewee.CharField(max_length=10)
    run_as_process = peewee.BooleanField(default=True)
    # Where the next attempt resumes: None (a checkpoint of an interrupted attempt, nothing after a
    # success), "last", "best" or "none", as the rerun that queued it asked (migration 9).
    resume_from = peewee.CharField(max_length=10, null=True)
    # How many of the newest checkpoints it keeps besides the best (None: TRAINFAAS_KEEP_CHECKPOINTS),
    # and whether it was removed from training: left out of default listings (migration 10).
    keep_checkpoints = peewee.IntegerField(null=True)
    removed = peewee.BooleanField(default=False, null=True)
    stop_requested = peewee.BooleanField(default=False)
    progress = peewee.DoubleField(default=0.0)
    message = peewee.TextField(default="")
    created_at = peewee.DoubleField(default=now_s, index=True)
    started_at = peewee.DoubleField(null=True)
    finished_at = peewee.DoubleField(null=True)
    error = peewee.TextField(null=True)
    traceback = peewee.TextField(null=True)
    output = JSONField(null=True)
    # When it last entered pending or rerun: its place in its service's queue (migration 14).
    queued_at = peewee.DoubleField(null=True, default=now_s)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        return round((self.finished_at or now_s()) - self.started_at, 3)


class StatusLog(BaseModel):
    execution = peewee.ForeignKeyField(Execution, backref="status_log", on_delete="CASCADE")
    status = peewee.CharField(max_length=20)
    at = peewee.DoubleField(default=now_s)
    message = peewee.TextField(default="")
    attempt = peewee.IntegerField()
    instance = peewee.CharField(max_length=32, null=True)


class Instance(BaseModel):
    id = peewee.CharField(primary_key=True, default=new_id, max_length=32)
    service = peewee.ForeignKeyField(Service, backref="instances", on_delete="CASCADE")
    backend = peewee.CharField(max_length=20, default="process")
    # The service's instance type it was started with (migration 17); None: not known (it
    # registered on its own, or before the column existed).
    instance_type = peewee.CharField(max_length=50, null=True)
    host = peewee.CharField(max_length=255, default="")
    pid = peewee.IntegerField(null=True)
    status = peewee.CharField(max_length=20, default=InstanceStatus.INITIALIZING.value, index=True)
    token_hash = peewee.CharField(max_length=64, null=True)
    # A pending registration (migration 6): the SHA-256 of the one-time token the scheduler handed
    # to the instance it started, and when that token expires. Cleared once it is used, and when
    # the row ends (lost, exited, failed) or an admin revokes it.
    registration_hash = peewee.CharField(max_length=64, null=True)
    registration_expires_at = peewee.DoubleField(null=True)
    heartbeat_at = peewee.DoubleField(null=True)
    started_at = peewee.DoubleField(default=now_s)
    ended_at = peewee.DoubleField(null=True)
    restart_count = peewee.IntegerField(default=0)
    last_exit_reason = peewee.TextField(null=True)
    running = JSONField(default=list)


class Attempt(BaseModel):
    execution = peewee.ForeignKeyField(Execution, backref="attempts", on_delete="CASCADE")
    number = peewee.IntegerField()
    instance = peewee.CharField(max_length=32, null=True)
    started_at = peewee.DoubleField(default=now_s)
    ended_at = peewee.DoubleField(null=True)
    outcome = peewee.CharField(max_length=20, null=True)
    reason = peewee.TextField(null=True)
    # What its work process used, as its instance measured it (migration 14); None: not measured.
    peak_rss_mb = peewee.DoubleField(null=True)
    mean_cpu_percent = peewee.DoubleField(null=True)
    peak_gpu_mem_mb = peewee.DoubleField(null=True)
    mean_gpu_util = peewee.DoubleField(null=True)
    usage_samples = peewee.IntegerField(null=True)

    class Meta:
        indexes = ((("execution", "number"), True),)


class MetricSample(BaseModel):
    execution = peewee.ForeignKeyField(Execution, backref="metric_samples", on_delete="CASCADE")
    attempt = peewee.IntegerField()
    figure = peewee.CharField(max_length=100)
    legend = peewee.CharField(max_length=100)
    x = peewee.DoubleField()
    y = peewee.DoubleField()
    at = peewee.DoubleField(default=now_s)


class Artifact(BaseModel):
    execution = peewee.ForeignKeyField(Execution, backref="artifacts", on_delete="CASCADE")
    attempt = peewee.IntegerField()
    kind = peewee.CharField(max_length=20)  # "checkpoint" or "model"
    path = peewee.TextField()
    step = peewee.IntegerField(null=True)
    metrics = JSONField(default=dict)
    at = peewee.DoubleField(default=now_s)
    # A checkpoint's id as people type it (unique prefixes resolve), and whether it is the best one
    # by the adapter's monitored figure (migration 10).
    uid = peewee.CharField(max_length=32, default=new_id, null=True)  # unique: an index of migration 10
    is_best = peewee.BooleanField(default=False, null=True)


class LogLine(BaseModel):
    execution = peewee.ForeignKeyField(Execution, backref="log_lines", on_delete="CASCADE")
    attempt = peewee.IntegerField()
    at = peewee.DoubleField(default=now_s)
    line = peewee.TextField()


class Project(BaseModel):
    """A group of models, data sets and executions; tokens are scoped to one (or to all: admin)."""

    name = peewee.CharField(primary_key=True, max_length=100)
    description = peewee.TextField(default="")
    created_at = peewee.DoubleField(default=now_s)
    # Quotas an admin set for this project (migration 5); None: the settings' defaults
    # (TRAINFAAS_PROJECT_MAX_QUEUED, TRAINFAAS_PROJECT_MAX_RUNNING).
    max_queued = peewee.IntegerField(null=True)
    max_running = peewee.IntegerField(null=True)


# metrics first: a metrics token reads /metrics and nothing else (require("read") refuses it).
TOKEN_SCOPES = ("metrics", "read", "write", "admin")


class Token(BaseModel):
    """An API token. Only the SHA-256 of its secret is kept; the secret is shown once, at creation."""

    id = peewee.CharField(primary_key=True, default=new_id, max_length=32)
    project = peewee.CharField(max_length=100, null=True, index=True)  # None: admin, all projects
    scope = peewee.CharField(max_length=10)
    name = peewee.CharField(max_length=200, default="")
    secret_hash = peewee.CharField(max_length=64, unique=True)
    created_at = peewee.DoubleField(default=now_s)
    revoked_at = peewee.DoubleField(null=True)


class Blueprint(BaseModel):
    """A named training configuration of a project: an architecture, adapter options, execution
    settings and optionally a data set (migration 7)."""

    id = peewee.CharField(primary_key=True, default=new_id, max_length=32)
    project = peewee.CharField(max_length=100, index=True)
    name = peewee.CharField(max_length=100)
    description = peewee.TextField(default="")
    architecture = peewee.CharField(max_length=100)
    dataset = peewee.TextField(null=True)
    configuration = JSONField(default=dict)
    execution = JSONField(default=dict)
    source_execution = peewee.CharField(max_length=32, null=True)
    created_at = peewee.DoubleField(default=now_s)

    class Meta:
        indexes = ((("project", "name"), True),)


# The tables of the first migration; later migrations add their own (see services/migrations).
ENTITIES: list[type[BaseModel]] = [
    Model, Service, Execution, StatusLog, Instance, Attempt, MetricSample, Artifact, LogLine,
]


class Webhook(BaseModel):
    """Where a project's execution status changes are sent, signed with ``secret`` (migration 15).

    The secret is kept as given, because each delivery's signature is computed from it; the API
    never returns it."""

    id = peewee.CharField(primary_key=True, default=new_id, max_length=32)
    project = peewee.CharField(max_length=100, index=True)
    url = peewee.TextField()
    events = JSONField(default=list)
    secret = peewee.TextField()
    description = peewee.TextField(default="")
    created_at = peewee.DoubleField(default=now_s)
    updated_at = peewee.DoubleField(default=now_s)


DELIVERY_STATUSES = ("pending", "succeeded", "failed")


class WebhookDelivery(BaseModel):
    """One event for one webhook: recorded once, with the execution's change, and tried until it
    succeeds or its retry window ends (migration 15). ``event_id`` is the idempotency id a
    receiver sees on every try."""

    id = peewee.CharField(primary_key=True, default=new_id, max_length=32)
    webhook = peewee.ForeignKeyField(Webhook, backref="deliveries", on_delete="CASCADE")
    event = peewee.CharField(max_length=40)
    event_id = peewee.CharField(max_length=32)
    payload = JSONField()
    status = peewee.CharField(max_length=10, default="pending")
    attempts = peewee.IntegerField(default=0)
    response_code = peewee.IntegerField(null=True)
    last_error = peewee.TextField(null=True)
    next_try_at = peewee.DoubleField(null=True, index=True)  # None once it succeeded or failed for good
    created_at = peewee.DoubleField(default=now_s)
    delivered_at = peewee.DoubleField(null=True)

    class Meta:
        indexes = ((("webhook", "event_id"), True),)
class Dataset(BaseModel):
    """A registered data set of a project: a folder in the data roots whose contents are taken as
    numbered, immutable versions (migration 13). Deleting one that trainings used only marks it
    deleted, so that their versions stay readable."""

    id = peewee.CharField(primary_key=True, default=new_id, max_length=32)
    project = peewee.CharField(max_length=100, index=True)
    name = peewee.CharField(max_length=100)
    path = peewee.TextField()
    task = peewee.CharField(max_length=50, null=True)
    constraints = JSONField(default=dict)
    created_at = peewee.DoubleField(default=now_s)
    deleted_at = peewee.DoubleField(null=True)


# One data set of a name per project, among those not deleted (deleted ones keep theirs).
Dataset.add_index(Dataset.index(Dataset.project, Dataset.name, unique=True, where=Dataset.deleted_at.is_null()))


class DatasetVersion(BaseModel):
    """One immutable version of a data set: the manifest of every file ([relative path, size,
    sha256], sorted), the labels and counts per subset, the format found and the digest of the manifest."""

    id = peewee.CharField(primary_key=True, default=new_id, max_length=32)
    dataset = peewee.ForeignKeyField(Dataset, backref="versions", on_delete="CASCADE")
    number = peewee.IntegerField()
    digest = peewee.CharField(max_length=64)
    format = peewee.CharField(max_length=50)
    subsets = JSONField(default=dict)
    manifest = JSONField(default=list)
    files = peewee.IntegerField()
    bytes = peewee.BigIntegerField()
    created_at = peewee.DoubleField(default=now_s)

    class Meta:
        indexes = ((("dataset", "number"), True),)


class DatasetAlias(BaseModel):
    """A name for one version of a data set (``train``, ``2026-q4``); ``latest`` is never stored."""

    dataset = peewee.ForeignKeyField(Dataset, backref="aliases", on_delete="CASCADE")
    alias = peewee.CharField(max_length=64)
    number = peewee.IntegerField()
    updated_at = peewee.DoubleField(default=now_s)

    class Meta:
        indexes = ((("dataset", "alias"), True),)


class DatasetShare(BaseModel):
    """Another project that may read a data set (and train on it), never change it."""

    dataset = peewee.ForeignKeyField(Dataset, backref="shares", on_delete="CASCADE")
    project = peewee.CharField(max_length=100, index=True)
    created_at = peewee.DoubleField(default=now_s)

    class Meta:
        indexes = ((("dataset", "project"), True),)


class DatasetUse(BaseModel):
    """Which version of a data set an execution trains on, and as which subset (``all`` for one folder)."""

    execution = peewee.CharField(max_length=32, index=True)
    dataset = peewee.ForeignKeyField(Dataset, backref="uses", on_delete="CASCADE")
    version = peewee.ForeignKeyField(DatasetVersion, backref="uses", on_delete="CASCADE")
    subset = peewee.CharField(max_length=20, default="all")


class DatasetRules(BaseModel):
    """The data set constraints of a project, checked at every training of it (a data set's own override them)."""

    project = peewee.CharField(primary_key=True, max_length=100)
    constraints = JSONField(default=dict)
    updated_at = peewee.DoubleField(default=now_s)


DATASET_ENTITIES: list[type[BaseModel]] = [Dataset, DatasetVersion, DatasetAlias, DatasetShare, DatasetUse, DatasetRules]
