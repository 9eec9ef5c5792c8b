"""Executions: submitting them (a training, or any function of trainfaas.services.core.protocol.FUNCTIONS),
finding them, stopping and rerunning them.

Every status change goes through :mod:`trainfaas.services.control.transitions`, and what it means
for the execution's model is written in the same transaction (:func:`models.follow`). A queue
write that fails is not an error for the caller: the execution is pending in the database and
the reconciler puts it back on the queue.
"""
from __future__ import annotations

import logging
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field, field_validator

from trainfaas.adapters.catalog import get_adapter
from trainfaas.services.control import dataset_rules, ids, models, placement, quotas
from trainfaas.services.control import transitions as states
from trainfaas.services.control.configuration import check_diagnostics, validate_configuration
from trainfaas.services.control.datasets import dataset_for
from trainfaas.services.control.services import ensure_service, only_as_process, timeout_range
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.protocol import FUNCTIONS, MODEL_FUNCTIONS, TRAIN_MODEL
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import ExecutionStatus
from trainfaas.services.store import queues
from trainfaas.services.store.records import DEFAULT_PROJECT, Execution, Model, Service, StatusLog

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
    run_as_process: bool | None = Field(None, description="Run in a separate monitored work process (always true).")
    keep_checkpoints: int | None = Field(None, ge=1, le=1000, description="Checkpoints kept besides the best one, newest"
                                         " first; older ones are deleted. Default: TRAINFAAS_KEEP_CHECKPOINTS (3).")

    _run_as_process = field_validator("run_as_process")(only_as_process)

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


def submit(settings: Settings, connection: redis.Redis, service: Service, function: str, name: str, input: dict[str, Any],
           model: Model | None, overrides: ExecutionSettings | None, project: str = DEFAULT_PROJECT) -> Execution:
    """Record the execution, mark it pending, then put it on the queue (in that order). A training first
    takes its model (see models.start_training): Conflict, and nothing recorded, while it has another.
    A project at its queued limit gets QuotaExceeded (429), and nothing recorded: the count and the
    insert share one transaction under the project's lock (see quotas.locked)."""
    values = (overrides or ExecutionSettings()).for_service(service, settings)
    with quotas.locked(project):
        quotas.check_queued(settings, project)
        if model is not None and function == TRAIN_MODEL:
            models.start_training(model.id)
        execution = Execution.create(
            service=service, function=function, name=name, input=input, model=model, project=project, **values,
        )
        StatusLog.create(execution=execution.id, status=ExecutionStatus.CREATED, attempt=1, message="created")
        execution = states.queue(execution.id, then=models.follow)
    try_enqueue(connection, execution)
    return execution


def try_enqueue(connection: redis.Redis, execution: Execution) -> bool:
    try:
        queues.enqueue(connection, execution.service_id, execution.id, execution.attempt)
        return True
    except redis.RedisError as exc:
        log.warning("execution %s attempt %s not queued yet (%s); the reconciler will", execution.id, execution.attempt, exc)
        return False


def submit_training(settings: Settings, connection: redis.Redis, model: Model, dataset: str | None,
                    configuration: dict[str, Any] | None, overrides: ExecutionSettings | None,
                    datasets: dict[str, str] | None = None) -> Execution:
    """Check the options and the data set (a folder, a registered data set's version, or one per
    subset: ``datasets``), then submit a training of ``model``."""
    adapter = get_adapter(model.architecture, settings.adapters)
    effective = validate_configuration(adapter, {**model.configuration, **(configuration or {})}, "configuration")
    check_diagnostics(settings, adapter, effective, "configuration")
    data = _training_data(settings, adapter, model, dataset, datasets, effective)
    quotas.check_queued(settings, model.project)  # before a first training creates the service (submit checks again, locked)
    service = ensure_service(settings, model.architecture, by_training=True)
    input = {"model_id": model.id, **data.input, "configuration": effective}
    execution = submit(settings, connection, service, TRAIN_MODEL, f"train {model.name}", input, model, overrides, model.project)
    dataset_rules.record_uses(execution.id, data.chosen)
    return execution


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


def submit_function(settings: Settings, connection: redis.Redis, service: Service, function: str,
                    input: dict[str, Any], overrides: ExecutionSettings | None, project: str = DEFAULT_PROJECT) -> Execution:
    """Run ``function`` on ``service``; a train_model goes into its model's project, others into ``project``."""
    if function not in FUNCTIONS:
        raise ConfigError(f"unknown function {function!r}", {"function": f"one of: {', '.join(sorted(FUNCTIONS))}"})
    if function in MODEL_FUNCTIONS:
        raise ConfigError(f"{function} runs a trained model: use POST /api/v1/models/{{id}}/{function.split('_')[0]}",
                          {"function": f"one of: {', '.join(sorted(FUNCTIONS - MODEL_FUNCTIONS))}"})
    if function != TRAIN_MODEL:
        return submit(settings, connection, service, function, function, input, None, overrides, project)
    model = models.get_model(str(input.get("model_id", "")))
    if model.architecture != service.architecture:
        raise ConfigError(f"model {model.id} is a {model.architecture}", {"input.model_id": f"a model of architecture {service.architecture}"})
    extra = set(input) - set(TRAINING_INPUT)
    if extra:
        raise ConfigError("unknown input fields", {f"input.{key}": "not allowed" for key in sorted(extra)})
    return submit_training(settings, connection, model, input.get("dataset"), input.get("configuration"), overrides)


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
    with quotas.locked(execution.project):
        quotas.check_queued(settings, execution.project)
        if changes is not None and changes.instance_type is not None:
            target = placement.service_on_type(settings, execution.service, changes.instance_type)
            if target.name != execution.service_id:
                fields["service"] = target.name
                said.append(f"instance type {execution.service.instance_type} -> {target.instance_type} (service {target.name})")
        reason = "rerun requested by user" + (f" ({'; '.join(said)})" if said else "")
        execution = states.rerun(execution.id, reason, then=models.rerun_training, **fields)
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
        fields.update(given)
        said += [f"{key} {getattr(execution, key)!r} -> {value!r}" for key, value in sorted(given.items()) if getattr(execution, key) != value]
    if changes.resume is not None:
        fields["resume_from"] = changes.resume
        said.append(f"resume from {changes.resume}")
    return fields, said
