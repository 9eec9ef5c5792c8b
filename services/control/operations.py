"""Control-plane operations behind the API: submit, claim, report, finish, reset.

Every status change goes through :mod:`trainfaas.services.control.transitions`; this module decides which one and
keeps the queue in step. A queue write that fails is not an error for the caller: the
execution is pending in the database and the reconciler puts it back on the queue.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from pathlib import Path
from typing import Any

import redis
from pydantic import ValidationError
from trainfaas.adapters.base import ModelAdapter
from trainfaas.adapters.catalog import get_adapter
from trainfaas.services.api.schemas import ExecutionSettings, ServicePatch
from trainfaas.services.control import transitions as states
from trainfaas.services.core.errors import ConfigError, Conflict, NotFound, ServicePaused, StaleAttempt
from trainfaas.services.core.settings import Settings
from trainfaas.services.store import queues
from trainfaas.services.store.database import database
from trainfaas.services.store.records import (
    DEFAULT_PROJECT,
    LIVE_INSTANCE,
    Artifact,
    Attempt,
    Execution,
    Instance,
    LogLine,
    MetricSample,
    Model,
    Service,
    now_s,
)

log = logging.getLogger(__name__)

EXECUTION_DEFAULTS = ("timeout_s", "drain_time_s", "on_reset", "max_attempts", "run_as_process")


def pydantic_fields(error: ValidationError, prefix: str = "") -> dict[str, str]:
    """Turn a pydantic error into {"field.path": "what is allowed"}."""
    fields = {}
    for item in error.errors():
        path = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        fields[path or prefix or "body"] = item["msg"]
    return fields


# ---- models and services -------------------------------------------------------------------


def validate_configuration(adapter: type[ModelAdapter], configuration: dict[str, Any], prefix: str) -> dict[str, Any]:
    try:
        return adapter.validate_configuration(configuration)
    except ValidationError as exc:
        raise ConfigError(f"invalid {prefix} for {adapter.__name__}", pydantic_fields(exc, prefix)) from None


def create_model(settings: Settings, name: str, architecture: str, task: str | None,
                 labels: list[str] | None, configuration: dict[str, Any] | None, project: str = DEFAULT_PROJECT,
                 from_model: str | None = None) -> Model:
    """Create a model in ``project``; with ``from_model``, a fine-tune of that trained model (same
    architecture, a project the caller sees), copying its labels and configuration unless given."""
    adapter = get_adapter(architecture, settings.adapters)
    own_task = adapter.task_of(architecture)
    if task is not None and task != own_task:
        raise ConfigError(f"architecture {architecture} trains task {own_task!r}", {"task": f"must be {own_task!r} or omitted"})
    if from_model is not None:
        base = Model.get_or_none(Model.id == from_model)
        if base is None or base.status != "trained" or not base.artifact_path:
            raise ConfigError(f"model {from_model} is not a trained model", {"from_model": "the id of a trained model"})
        if base.architecture != architecture:
            raise ConfigError(f"model {from_model} is a {base.architecture}, not a {architecture}",
                              {"from_model": f"a trained {architecture} model"})
        labels = labels if labels is not None else list(base.labels)
        configuration = {**base.configuration, **(configuration or {})}
    validate_configuration(adapter, configuration or {}, "configuration")
    return Model.create(name=name, architecture=architecture, task=own_task, labels=labels or [],
                        configuration=configuration or {}, project=project, base_model=from_model)


def get_model(model_id: str) -> Model:
    model = Model.get_or_none(Model.id == model_id)
    if model is None:
        raise NotFound(f"model {model_id} does not exist")
    return model


def get_service(name: str) -> Service:
    service = Service.get_or_none(Service.name == name)
    if service is None:
        raise NotFound(f"service {name} does not exist; services are created by the first training of an architecture")
    return service


def ensure_service(settings: Settings, architecture: str) -> Service:
    """The architecture's service, created with defaults on first use. Safe under concurrency."""
    get_adapter(architecture, settings.adapters)
    name = queues.service_name(architecture)
    service = Service.get_or_none(Service.name == name)
    if service is None:
        try:
            with database.atomic():
                service = Service.create(name=name, architecture=architecture)
        except Exception:  # noqa: BLE001 - another request created it first
            service = Service.get_by_id(name)
    return service


def check_service_patch(service: Service, patch: ServicePatch, settings: Settings | None = None) -> dict[str, Any]:
    """The changes ``patch`` makes to ``service``; ConfigError if they do not fit together."""
    changes = patch.model_dump(exclude_none=True)
    if settings is not None and "instance_type" in changes and changes["instance_type"] not in settings.instance_types:
        raise ConfigError(f"unknown instance type {changes['instance_type']!r}",
                          {"instance_type": f"one of: {', '.join(sorted(settings.instance_types))}"})
    low = changes.get("min_instances", service.min_instances)
    high = changes.get("max_instances", service.max_instances)
    if low > high:
        raise ConfigError("min_instances is above max_instances", {"min_instances": f"must be <= max_instances ({high})"})
    return changes


def update_service(service: Service, patch: ServicePatch, settings: Settings | None = None) -> Service:
    changes = check_service_patch(service, patch, settings)
    if changes:
        Service.update(**changes, updated_at=now_s()).where(Service.name == service.name).execute()
    return Service.get_by_id(service.name)


# ---- submitting executions ------------------------------------------------------------------


def resolve_dataset(settings: Settings, dataset: str) -> Path:
    """The data set's directory, symlinks resolved; ConfigError unless it lies in a data root.

    A name is taken relative to the first data root (by default home/datasets). Checking the resolved path keeps ``..`` and
    symlinks from reaching files the API process can read but the caller should not.
    """
    roots = settings.dataset_roots
    path = Path(dataset).expanduser()
    if not path.is_absolute():
        path = roots[0] / dataset
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ConfigError(f"data set {dataset} lies outside the data roots",
                          {"dataset": f"a directory inside {' or '.join(map(str, roots))} (TRAINFAAS_DATA_ROOTS)"})
    return resolved


def check_dataset(adapter: type[ModelAdapter], path: Path, configuration: dict[str, Any]) -> list[str]:
    """Validate the data set with the adapter's own reader and return its labels."""
    return adapter.check_dataset(path, configuration)


def _execution_settings(service: Service, overrides: ExecutionSettings | None) -> dict[str, Any]:
    given = overrides.model_dump(exclude_none=True) if overrides else {}
    return {key: given.get(key, getattr(service, key)) for key in EXECUTION_DEFAULTS}


def submit(connection: redis.Redis, service: Service, function: str, name: str, input: dict[str, Any],
           model: Model | None, overrides: ExecutionSettings | None, project: str = DEFAULT_PROJECT) -> Execution:
    """Record the execution, mark it pending, then put it on the queue (in that order)."""
    with database.atomic():
        execution = Execution.create(
            service=service, function=function, name=name, input=input, model=model, project=project,
            **_execution_settings(service, overrides),
        )
        states.StatusLog.create(execution=execution.id, status="created", attempt=1, message="created")
        execution = states.queue(execution.id)
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
                    configuration: dict[str, Any] | None, overrides: ExecutionSettings | None) -> Execution:
    adapter = get_adapter(model.architecture, settings.adapters)
    effective = validate_configuration(adapter, {**model.configuration, **(configuration or {})}, "configuration")
    data_path = None
    if adapter.dataset_format is not None:
        if not dataset:
            raise ConfigError(f"{model.architecture} trains on a data set", {"dataset": f"required: a {adapter.dataset_format} directory"})
        data_path = resolve_dataset(settings, dataset)
        check_dataset(adapter, data_path, effective)
    service = ensure_service(settings, model.architecture)
    input = {"model_id": model.id, "dataset": str(data_path) if data_path else None, "configuration": effective}
    execution = submit(connection, service, "train_model", f"train {model.name}", input, model, overrides, model.project)
    Model.update(status="pending", updated_at=now_s()).where(Model.id == model.id).execute()
    return execution


def submit_function(settings: Settings, connection: redis.Redis, service: Service, function: str,
                    input: dict[str, Any], overrides: ExecutionSettings | None, project: str = DEFAULT_PROJECT) -> Execution:
    """Run ``function`` on ``service``; a train_model goes into its model's project, others into ``project``."""
    from trainfaas.functions.run import FUNCTIONS

    if function not in FUNCTIONS:
        raise ConfigError(f"unknown function {function!r}", {"function": f"one of: {', '.join(sorted(FUNCTIONS))}"})
    if function == "train_model":
        model = get_model(str(input.get("model_id", "")))
        if model.architecture != service.architecture:
            raise ConfigError(f"model {model.id} is a {model.architecture}", {"input.model_id": f"a model of architecture {service.architecture}"})
        extra = set(input) - {"model_id", "dataset", "configuration"}
        if extra:
            raise ConfigError("unknown input fields", {f"input.{key}": "not allowed" for key in sorted(extra)})
        return submit_training(settings, connection, model, input.get("dataset"), input.get("configuration"), overrides)
    return submit(connection, service, function, function, input, None, overrides, project)


def get_execution(execution_id: str) -> Execution:
    execution = Execution.get_or_none(Execution.id == execution_id)
    if execution is None:
        raise NotFound(f"execution {execution_id} does not exist")
    return execution


def terminate(execution_id: str) -> Execution:
    """Stop an execution (see states.request_stop); a training stopped before it ran leaves its model as it was."""
    execution = states.request_stop(execution_id)
    if execution.status == "terminated":
        _model_stopped(execution, {})
    return execution


def rerun(connection: redis.Redis, execution_id: str) -> Execution:
    execution = states.rerun(execution_id)
    if execution.model_id:
        Model.update(status="pending", updated_at=now_s()).where(Model.id == execution.model_id).execute()
    try_enqueue(connection, execution)
    return execution


# ---- instances -------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def register_instance(service_name: str, instance_id: str | None, host: str, pid: int | None, backend: str) -> tuple[Instance, str]:
    """Register (or adopt a pre-created row for) an instance; return it with a fresh token.

    A row is adopted once, while it has no token: registering again with the id of a registered
    instance would hand its executions to whoever knows the id (ids are listed to readers).
    """
    service = get_service(service_name)
    token = secrets.token_urlsafe(32)
    fields = dict(host=host, pid=pid, backend=backend, status="running", heartbeat_at=now_s(), token_hash=hash_token(token), ended_at=None)
    if instance_id:
        adopt = (Instance.id == instance_id) & Instance.token_hash.is_null() & (Instance.service == service.name)
        if Instance.update(**fields).where(adopt).execute():
            return Instance.get_by_id(instance_id), token
        if Instance.get_or_none(Instance.id == instance_id) is not None:
            raise Conflict(f"instance {instance_id} is already registered", {"instance_id": "the id of an instance not registered yet, or none"})
        return Instance.create(id=instance_id, service=service, **fields), token
    return Instance.create(service=service, **fields), token


def replace_instance_token(instance_id: str) -> str:
    """Give an instance a new token and return it; the old one stops working. For operators who
    must act as an instance (and for tests of fencing): the API never calls this."""
    token = secrets.token_urlsafe(32)
    if not Instance.update(token_hash=hash_token(token)).where(Instance.id == instance_id).execute():
        raise NotFound(f"instance {instance_id} does not exist")
    return token


def authenticate_instance(instance_id: str, token: str) -> Instance | None:
    instance = Instance.get_or_none(Instance.id == instance_id)
    if instance is None or not instance.token_hash or not secrets.compare_digest(instance.token_hash, hash_token(token)):
        return None
    return instance


def output_path(settings: Settings, execution_id: str, attempt: int) -> Path:
    return settings.executions_dir / execution_id / f"attempt-{attempt}"


def last_checkpoint(execution_id: str, before_attempt: int) -> Artifact | None:
    """The newest checkpoint of the previous attempt, unless that attempt succeeded: a rerun of a
    finished training trains anew, a rerun of an interrupted one continues where it stopped."""
    previous = Attempt.get_or_none((Attempt.execution == execution_id) & (Attempt.number == before_attempt - 1))
    if previous is None or previous.outcome == "success":
        return None
    row = (Artifact.select().where((Artifact.execution == execution_id) & (Artifact.kind == "checkpoint")
                                   & (Artifact.attempt < before_attempt))
           .order_by(Artifact.attempt.desc(), Artifact.step.desc(), Artifact.id.desc()).first())
    return row if row and Path(row.path).exists() else None


def claim(settings: Settings, instance: Instance, execution_id: str, attempt: int) -> dict[str, Any]:
    """Start ``attempt`` on ``instance`` and return the work spec. Raises if it is not claimable."""
    execution = get_execution(execution_id)
    if execution.service_id != instance.service_id:
        raise NotFound(f"execution {execution_id} does not exist in service {instance.service_id}")
    if execution.service.paused:
        raise ServicePaused(f"service {instance.service_id} is paused; execution {execution_id} stays queued")
    execution = states.claim(execution_id, attempt, instance.id)
    checkpoint = last_checkpoint(execution_id, attempt)
    resume = checkpoint.path if checkpoint else None
    if checkpoint:
        states.StatusLog.create(execution=execution_id, status="in-progress", attempt=attempt, instance=instance.id,
                                message=f"resuming from checkpoint at step {checkpoint.step} of attempt {checkpoint.attempt}: {resume}")
    spec: dict[str, Any] = {
        "execution_id": execution.id, "attempt": attempt, "function": execution.function, "input": execution.input,
        "output_path": str(output_path(settings, execution.id, attempt)), "resume_checkpoint": resume,
        "adapters": settings.adapters, "data_path": execution.input.get("dataset"),
    }
    if execution.model_id:
        model = execution.model
        spec["model"] = {"id": model.id, "architecture": model.architecture, "labels": model.labels}
        base = Model.get_or_none(Model.id == model.base_model) if model.base_model else None
        if base is not None and base.artifact_path:
            spec["base_model"] = base.artifact_path
        Model.update(status="training", updated_at=now_s()).where(Model.id == model.id).execute()
    return {"spec": spec, "timeout_s": execution.timeout_s, "drain_time_s": execution.drain_time_s,
            "run_as_process": execution.run_as_process}


def record_events(instance: Instance, events: list[Any]) -> dict[str, str]:
    """Store progress, metrics, logs and checkpoints; events of stale attempts are dropped.

    Returns {execution_id: why} for each execution whose events were refused, so the instance
    can stop work that is no longer its own.
    """
    refused: dict[str, str] = {}
    current: dict[str, bool] = {}
    with database.atomic():
        for event in events:
            key = f"{event.execution_id}:{event.attempt}"
            if key not in current:
                current[key] = _owns(instance, event.execution_id, event.attempt, refused)
            if current[key]:
                _store_event(event)
    return refused


def _owns(instance: Instance, execution_id: str, attempt: int, refused: dict[str, str]) -> bool:
    running = Attempt.get_or_none((Attempt.execution == execution_id) & (Attempt.number == attempt))
    try:
        states.check_current(execution_id, attempt)
    except (StaleAttempt, NotFound, states.InvalidTransition) as exc:
        refused[execution_id] = exc.message
        return False
    if running is None or running.instance != instance.id:
        refused[execution_id] = f"attempt {attempt} does not run on instance {instance.id}"
        return False
    return True


def _store_event(event: Any) -> None:
    eid, attempt, data = event.execution_id, event.attempt, event.data
    if event.kind == "progress":
        Execution.update(progress=float(data[0]), message=str(data[1])[:2000]).where(Execution.id == eid).execute()
    elif event.kind == "metric":
        MetricSample.create(execution=eid, attempt=attempt, figure=data[0], legend=data[1], x=data[2], y=data[3], at=event.at)
    elif event.kind == "log":
        LogLine.create(execution=eid, attempt=attempt, line=str(data[0])[:10000], at=event.at)
    elif event.kind == "checkpoint":
        Artifact.create(execution=eid, attempt=attempt, kind="checkpoint", path=data[0], step=data[1], metrics=data[2], at=event.at)


def finish(connection: redis.Redis, instance: Instance, execution_id: str, attempt: int, outcome: str,
           reason: str, error: str | None, traceback: str | None, output: dict[str, Any] | None) -> Execution:
    """An instance reports how an attempt ended. Fenced: a stale attempt's report raises, and an
    execution of another service is not found (an instance token reaches only its own service)."""
    if get_execution(execution_id).service_id != instance.service_id:
        raise NotFound(f"execution {execution_id} does not exist in service {instance.service_id}")
    if outcome == "reset":
        return reset(connection, execution_id, attempt, reason, instance=instance.id)
    if outcome == "success":
        execution = states.finish(execution_id, attempt, "success", reason or "succeeded", instance=instance.id,
                                  output=output, progress=100.0)
        _model_trained(execution, output or {})
        return execution
    if outcome == "terminated":
        execution = states.finish(execution_id, attempt, "terminated", reason or "stopped by user", instance=instance.id, output=output)
        _model_stopped(execution, output or {})
        return execution
    execution = states.finish(execution_id, attempt, "failed", reason or "failed", instance=instance.id,
                              error=error or reason, traceback=traceback)
    if execution.model_id:
        Model.update(status="failed", updated_at=now_s()).where(Model.id == execution.model_id).execute()
    return execution


def _model_trained(execution: Execution, output: dict[str, Any]) -> None:
    if not execution.model_id or "model_path" not in output:
        return
    Artifact.create(execution=execution.id, attempt=execution.attempt, kind="model", path=output["model_path"],
                    metrics=output.get("metrics") or {})
    Model.update(status="trained", artifact_path=output["model_path"], metrics=output.get("metrics") or {},
                 labels=output.get("labels") or execution.model.labels, updated_at=now_s()).where(Model.id == execution.model_id).execute()


def _model_stopped(execution: Execution, output: dict[str, Any]) -> None:
    """A stopped training that saved its model leaves a usable (partly trained) model; one that
    saved nothing leaves the model trained if an earlier training succeeded, else created."""
    if not execution.model_id:
        return
    if "model_path" in output:
        _model_trained(execution, output)
        return
    model = execution.model
    Model.update(status="trained" if model.artifact_path else "created", updated_at=now_s()).where(Model.id == model.id).execute()


def reset(connection: redis.Redis, execution_id: str, attempt: int, reason: str, instance: str | None = None) -> Execution:
    """Reset an attempt (rerun or abort per its settings) and queue the rerun."""
    execution = states.reset(execution_id, attempt, reason, instance=instance)
    if execution.status == "rerun":
        try_enqueue(connection, execution)
    elif execution.model_id and execution.status == "aborted":
        Model.update(status="failed", updated_at=now_s()).where(Model.id == execution.model_id).execute()
    elif execution.status == "terminated":
        _model_stopped(execution, {})
    return execution


def heartbeat(instance: Instance, status: str, running: list[Any]) -> dict[str, Any]:
    """Record a heartbeat and tell the instance what to do with the work it runs.

    ``stop``: a user asked these to stop; end them gracefully (should_stop, then terminated).
    ``abandon``: these attempts are no longer this instance's (reset elsewhere); kill them.
    ``paused``: the service is paused; take no new executions until it is resumed.
    ``drain``: the scheduler chose this instance to go: stop pulling, finish, exit.
    """
    if instance.status not in LIVE_INSTANCE:
        # The reaper gave this instance up; whatever it still runs belongs to newer attempts.
        return {"stop": [], "abandon": [entry.execution_id for entry in running], "paused": True, "drain": True}
    paused = bool(Service.get_by_id(instance.service_id).paused)
    if paused and status in ("running", "full"):
        status = "paused"
    if instance.status == "terminating" and status != "terminating":
        status = "terminating"  # the scheduler asked it to go; it is on its way
    Instance.update(heartbeat_at=now_s(), status=status,
                    running=[e.model_dump() for e in running]).where(Instance.id == instance.id).execute()
    stop, abandon = [], []
    for entry in running:
        execution = Execution.get_or_none(Execution.id == entry.execution_id)
        if execution is None or execution.attempt != entry.attempt or execution.status != "in-progress":
            abandon.append(entry.execution_id)
        elif execution.stop_requested:
            stop.append(entry.execution_id)
    return {"stop": stop, "abandon": abandon, "paused": paused, "drain": status == "terminating"}


def deregister(instance: Instance, reason: str) -> None:
    Instance.update(status="exited", ended_at=now_s(), last_exit_reason=reason, running=[]).where(Instance.id == instance.id).execute()
