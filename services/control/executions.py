"""Executions: submitting them (a training, or any function of trainfaas.services.core.protocol.FUNCTIONS),
finding them, stopping and rerunning them.

Every status change goes through :mod:`trainfaas.services.control.transitions`, and what it means
for the execution's model is written in the same transaction (:func:`models.follow`). A queue
write that fails is not an error for the caller: the execution is pending in the database and
the reconciler puts it back on the queue.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field

from trainfaas.adapters.catalog import get_adapter
from trainfaas.services.control import dataset_rules, ids, models, placement, quotas, webhooks
from trainfaas.services.control import transitions as states
from trainfaas.services.control.configuration import check_diagnostics, validate_configuration
from trainfaas.services.control.datasets import dataset_for
from trainfaas.services.control.services import RUN_AS_PROCESS, check_run_as_process, ensure_service, timeout_range
from trainfaas.services.core.errors import ConfigError, TrainfaasError
from trainfaas.services.core.protocol import FUNCTIONS, MODEL_FUNCTIONS, TRAIN_MODEL
from trainfaas.services.core.settings import Settings
from trainfaas.services.store import queues
from trainfaas.services.store.records import DEFAULT_PROJECT, Execution, Model, Service

log = logging.getLogger(__name__)

TRAINING_INPUT = ("model_id", "dataset", "configuration")
MAX_ATTEMPTS = 10


class ExecutionSettings(BaseModel):
    """Per-execution settings; each one not given is copied from the service."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float | None = Field(None, gt=0, le=30 * 86400,
                                    description="Reset the attempt after this long; at most TRAINFAAS_MAX_TIMEOUT_S (default 24 h).")
    drain_time_s: float | None = Field(None, ge=0, le=86400, description="Grace to finish when an instance stops.")
    on_reset: Literal["rerun", "fail"] | None = Field(None, description="What a reset does: rerun or fail (aborted).")
    max_attempts: int | None = Field(None, ge=1, le=MAX_ATTEMPTS, description="Attempts including the first.")
    run_as_process: bool | None = Field(None, description=RUN_AS_PROCESS)
    keep_checkpoints: int | None = Field(None, ge=1, le=1000, description="Checkpoints kept besides the best one, newest"
                                         " first; older ones are deleted. Default: TRAINFAAS_KEEP_CHECKPOINTS (3).")

    def for_service(self, service: Service, settings: Settings) -> dict[str, Any]:
        """Every setting: the ones given here, the service's for the others. A timeout_s given
        above ``settings.max_timeout_s`` is a ConfigError; a service's longer default is cut to it."""
        given = self.model_dump(exclude_none=True)
        if given.get("timeout_s", 0) > settings.max_timeout_s:
            raise ConfigError(f"timeout_s {given['timeout_s']:g} is longer than this server allows",
                              {"execution.timeout_s": timeout_range(settings)})
        values = {key: given.get(key, getattr(service, key, None)) for key in type(self).model_fields}
        values["timeout_s"] = min(values["timeout_s"], settings.max_timeout_s)
        return values


def get_execution(execution_id: str, project: str | None = None) -> Execution:
    """The execution whose id is (or starts with) ``execution_id``, in ``project`` (None: any).
    NotFound or, for a prefix of several, Conflict (see trainfaas.services.control.ids)."""
    return ids.find(Execution, execution_id, "execution", None if project is None else Execution.project == project)


@dataclasses.dataclass(frozen=True)
class Submission:
    """One execution checked and ready to record (see :func:`submit_many`): its row's fields, the
    model a training takes, and the data set versions it uses."""

    fields: dict[str, Any]
    model: Model | None = None
    chosen: tuple[dataset_rules.Chosen, ...] = ()


def prepare(settings: Settings, service: Service, function: str, name: str, input: dict[str, Any], model: Model | None,
            overrides: ExecutionSettings | None, project: str = DEFAULT_PROJECT,
            chosen: tuple[dataset_rules.Chosen, ...] = ()) -> Submission:
    """The submission of ``function`` on ``service``, its settings those of ``overrides`` over the service's."""
    values = (overrides or ExecutionSettings()).for_service(service, settings)
    check_run_as_process(function, values["run_as_process"], service)
    fields = {"service": service.name, "function": function, "name": name, "input": input,
              "model": model.id if model is not None else None, "project": project, **values}
    return Submission(fields, model, chosen)


def submit_many(settings: Settings, connection: redis.Redis, submissions: list[Submission], batch: bool = False) -> list[Execution]:
    """Record the executions, pending, in one transaction, then put them on their queues in one round
    trip (in that order: a queue write that fails is the reconciler's to redo). All or nothing: a
    project that the submissions would take past its queued limit gets QuotaExceeded (429), a
    training whose model has another one Conflict (409; naming ``executions.<index>`` in a
    ``batch``), and nothing is recorded. The counts and the inserts share one transaction under
    each project's lock, taken after the inserts (see quotas.lock_and_check)."""
    per_project = collections.Counter(submission.fields["project"] for submission in submissions)
    # Read before the locks, so that they are held for the count and the writes only: a limit or a
    # webhook changed meanwhile is as if changed just after this enqueue.
    limits = {project: quotas.queued_limit(settings, project) for project in per_project}
    listening = {project: webhooks.listeners(project) for project in per_project}
    with quotas.writing():
        for index, submission in enumerate(submissions):
            if submission.model is not None and submission.fields["function"] == TRAIN_MODEL:
                with naming(index if batch else None):
                    models.start_training(submission.model.id)
        # The inserts, the locks and the check: one round trip on PostgreSQL; the locks are taken after the
        # inserts, and held for the check, what records the executions' webhooks and data sets, and the commit.
        executions = states.record_queued([submission.fields for submission in submissions], then=models.follow, listening=listening,
                                          write=lambda inserts: quotas.lock_and_check(per_project, limits, after=inserts))
        for execution, submission in zip(executions, submissions, strict=True):
            dataset_rules.record_uses(execution.id, list(submission.chosen))
    try_enqueue_many(connection, executions)
    return executions


@contextlib.contextmanager
def naming(index: int | None) -> Iterator[None]:
    """Name the fields of an error raised inside as those of item ``index`` of a batch (None: as they are)."""
    try:
        yield
    except TrainfaasError as exc:
        if index is not None:
            exc.fields = {f"executions.{index}.{key}": value for key, value in exc.fields.items()} or {f"executions.{index}": str(exc)}
            exc.message = f"executions[{index}]: {exc.message}"
        raise


def submit(settings: Settings, connection: redis.Redis, service: Service, function: str, name: str, input: dict[str, Any],
           model: Model | None, overrides: ExecutionSettings | None, project: str = DEFAULT_PROJECT) -> Execution:
    """Record one execution, pending, then put it on the queue (see :func:`submit_many`). A training first
    takes its model (see models.start_training): Conflict, and nothing recorded, while it has another."""
    return submit_many(settings, connection, [prepare(settings, service, function, name, input, model, overrides, project)])[0]


def try_enqueue(connection: redis.Redis, execution: Execution) -> bool:
    return try_enqueue_many(connection, [execution])


def try_enqueue_many(connection: redis.Redis, executions: list[Execution]) -> bool:
    """Put the executions on their queues in one round trip; False (logged) when Redis fails: they
    are pending in the database, and the reconciler puts them back on their queues."""
    jobs = [(execution.service_id, execution.id, execution.attempt) for execution in executions]
    try:
        if len(jobs) == 1:
            queues.enqueue(connection, *jobs[0])
        else:
            queues.enqueue_many(connection, jobs)
        return True
    except redis.RedisError as exc:
        log.warning("executions %s not queued yet (%s); the reconciler will",
                    ", ".join(f"{execution.id} attempt {execution.attempt}" for execution in executions[:10]), exc)
        return False


def prepare_training(settings: Settings, model: Model, dataset: str | None, configuration: dict[str, Any] | None,
                     overrides: ExecutionSettings | None, datasets: dict[str, str] | None = None) -> Submission:
    """Check the options and the data set (a folder, a registered data set's version, or one per
    subset: ``datasets``) of a training of ``model``: its submission."""
    adapter = get_adapter(model.architecture, settings.adapters)
    effective = validate_configuration(adapter, {**model.configuration, **(configuration or {})}, "configuration")
    check_diagnostics(settings, adapter, effective, "configuration")
    data = _training_data(settings, adapter, model, dataset, datasets, effective)
    quotas.check_queued(settings, model.project)  # before a first training creates the service (submit checks again, locked)
    service = ensure_service(settings, model.architecture, by_training=True)
    input = {"model_id": model.id, **data.input, "configuration": effective}
    return prepare(settings, service, TRAIN_MODEL, f"train {model.name}", input, model, overrides, model.project, tuple(data.chosen))


def submit_training(settings: Settings, connection: redis.Redis, model: Model, dataset: str | None,
                    configuration: dict[str, Any] | None, overrides: ExecutionSettings | None,
                    datasets: dict[str, str] | None = None) -> Execution:
    """Submit a training of ``model`` (see :func:`prepare_training`)."""
    submission = prepare_training(settings, model, dataset, configuration, overrides, datasets)
    return submit_many(settings, connection, [submission])[0]


def _training_data(settings: Settings, adapter: Any, model: Model, dataset: str | None, datasets: dict[str, str] | None,
                   effective: dict[str, Any]) -> dataset_rules.TrainingData:
    if datasets and dataset:
        raise ConfigError("give dataset or datasets, not both", {"datasets": "separate data sets per subset, without dataset"})
    if datasets:
        return dataset_rules.split_training(adapter, model, datasets)
    given = dataset or model.dataset
    chosen = dataset_rules.lookup(model.project, given) if given and adapter.dataset_format is not None else None
    if chosen is None:
        data_path = dataset_for(settings, adapter, model.architecture, given, effective)
        return dataset_rules.TrainingData({"dataset": str(data_path) if data_path else None}, [])
    dataset_rules.check(chosen, adapter, model)
    data_path = dataset_for(settings, adapter, model.architecture, chosen.dataset.path, effective)
    return dataset_rules.TrainingData({"dataset": str(data_path), "dataset_versions": {"all": chosen.record()}}, [chosen])


def prepare_function(settings: Settings, service: Service, function: str, input: dict[str, Any],
                     overrides: ExecutionSettings | None, project: str = DEFAULT_PROJECT) -> Submission:
    """Check a run of ``function`` on ``service``: its submission. A train_model goes into its model's project, others into ``project``."""
    if function not in FUNCTIONS:
        raise ConfigError(f"unknown function {function!r}", {"function": f"one of: {', '.join(sorted(FUNCTIONS))}"})
    if function in MODEL_FUNCTIONS:
        raise ConfigError(f"{function} runs a trained model: use POST /api/v1/models/{{id}}/{function.split('_')[0]}",
                          {"function": f"one of: {', '.join(sorted(FUNCTIONS - MODEL_FUNCTIONS))}"})
    if function != TRAIN_MODEL:
        return prepare(settings, service, function, function, input, None, overrides, project)
    model = models.get_model(str(input.get("model_id", "")))
    if model.architecture != service.architecture:
        raise ConfigError(f"model {model.id} is a {model.architecture}", {"input.model_id": f"a model of architecture {service.architecture}"})
    extra = set(input) - set(TRAINING_INPUT)
    if extra:
        raise ConfigError("unknown input fields", {f"input.{key}": "not allowed" for key in sorted(extra)})
    return prepare_training(settings, model, input.get("dataset"), input.get("configuration"), overrides)


def submit_function(settings: Settings, connection: redis.Redis, service: Service, function: str,
                    input: dict[str, Any], overrides: ExecutionSettings | None, project: str = DEFAULT_PROJECT) -> Execution:
    """Run ``function`` on ``service`` (see :func:`prepare_function`)."""
    return submit_many(settings, connection, [prepare_function(settings, service, function, input, overrides, project)])[0]


def terminate(execution_id: str) -> Execution:
    """Stop an execution (see states.request_stop); a training stopped before it ran leaves its model as it was."""
    return states.request_stop(execution_id, then=models.follow)


class RerunChanges(BaseModel):
    """What a rerun changes: adapter options (merged over the execution's), execution settings, and
    which checkpoint the new attempt resumes from."""

    model_config = ConfigDict(extra="forbid")

    configuration: dict[str, Any] | None = Field(None, description="Adapter options merged over the training's (checked again).")
    execution: ExecutionSettings | None = Field(None, description="Settings to change; max_attempts counts every attempt so far.")
    resume: Literal["last", "best", "none"] | None = Field(
        None, description="last: the newest checkpoint of any earlier attempt; best: the best checkpoint; none: start anew."
                          " Default: the checkpoint of an interrupted attempt, nothing after a success.")
    instance_type: str | None = Field(None, min_length=1, max_length=50,
                                      description="Run on the architecture's service of this instance type (created as needed; see"
                                                  " docs/concepts.md#rerunning-on-another-instance-type). Unknown types: 422 listing the known ones.")


def rerun(settings: Settings, connection: redis.Redis, execution_id: str, changes: RerunChanges | None = None) -> Execution:
    """Queue an ended execution again as a new attempt (see states.rerun), with ``changes``; a
    training only while its model has no other training pending or running (Conflict otherwise,
    see models.start_training), and only while its project is below its queued limit."""
    execution = get_execution(execution_id)
    fields, said = _rerun_fields(settings, execution, changes or RerunChanges())
    limit = {execution.project: quotas.queued_limit(settings, execution.project)}
    quotas.check_queued(settings, execution.project, limit=limit[execution.project])  # a refusal early, writing nothing
    with quotas.writing():
        if changes is not None and changes.instance_type is not None:
            target = placement.service_on_type(settings, execution.service, changes.instance_type)
            if target.name != execution.service_id:
                fields["service"] = target.name
                said.append(f"instance type {execution.service.instance_type} -> {target.instance_type} (service {target.name})")
        reason = "rerun requested by user" + (f" ({'; '.join(said)})" if said else "")
        execution = states.rerun(execution.id, reason, then=models.rerun_training, **fields)
        # The project's lock last, as every writer takes it (after its rows): held for the check and the commit.
        quotas.lock_and_check({execution.project: 1}, limit)
    try_enqueue(connection, execution)
    return execution


def _rerun_fields(settings: Settings, execution: Execution, changes: RerunChanges) -> tuple[dict[str, Any], list[str]]:
    """The execution's fields a rerun writes, and what it says of them in the status log."""
    fields: dict[str, Any] = {"removed": False}  # a rerun puts a removed execution back in the listings
    said: list[str] = []
    if changes.configuration:
        if execution.function != TRAIN_MODEL:
            raise ConfigError(f"execution {execution.id} runs {execution.function}, which takes no options",
                              {"configuration": "only a training's rerun takes options"})
        adapter = get_adapter(execution.service.architecture, settings.adapters)
        before = dict(execution.input.get("configuration") or {})
        merged = validate_configuration(adapter, {**before, **changes.configuration}, "configuration")
        check_diagnostics(settings, adapter, merged, "configuration")
        fields["input"] = {**execution.input, "configuration": merged}
        said += [f"{key} {before.get(key)!r} -> {merged[key]!r}" for key in sorted(changes.configuration) if before.get(key) != merged[key]]
    if changes.execution is not None:
        given = changes.execution.model_dump(exclude_none=True)
        if given.get("timeout_s", 0) > settings.max_timeout_s:
            raise ConfigError(f"timeout_s {given['timeout_s']:g} is longer than this server allows",
                              {"execution.timeout_s": timeout_range(settings)})
        if "run_as_process" in given:
            check_run_as_process(execution.function, given["run_as_process"], execution.service)
        fields.update(given)
        said += [f"{key} {getattr(execution, key)!r} -> {value!r}" for key, value in sorted(given.items()) if getattr(execution, key) != value]
    if changes.resume is not None:
        fields["resume_from"] = changes.resume
        said.append(f"resume from {changes.resume}")
    return fields, said
