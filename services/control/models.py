"""Models: creating them, finding them, and the one writer of ``Model.status``.

A model's status follows its trainings: :func:`follow` is what each change of a training means
for its model, and the state machine calls it inside the transaction of that change
(trainfaas.services.control.transitions' ``then``), so the two never disagree.

A model trains once at a time: a new training, or a rerun of an ended one, first takes the model
with :func:`start_training`, a compare-and-set from a trainable status (created, trained, failed)
to pending in the transaction that queues it. A pre-trained model (imported weights) is not trained
itself: it is the base of the models that fine-tune from it (``from_model``). The loser of two requests gets a Conflict naming the
training that holds the model, and its transaction, execution row included, is rolled back.
"""
from __future__ import annotations

from typing import Any

from trainfaas.adapters.catalog import get_adapter
from trainfaas.services.control import dataset_rules, ids
from trainfaas.services.control.configuration import check_diagnostics, validate_configuration
from trainfaas.services.control.datasets import resolve_dataset
from trainfaas.services.core.errors import ConfigError, Conflict
from trainfaas.services.core.protocol import TRAIN_MODEL
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import TERMINAL_EXECUTION, ExecutionStatus, ModelStatus
from trainfaas.services.store.records import DEFAULT_PROJECT, Artifact, Execution, Model, now_s


def get_model(model_id: str, project: str | None = None) -> Model:
    """The model whose id is (or starts with) ``model_id``, in ``project`` (None: any). NotFound
    or, for a prefix of several, Conflict (see trainfaas.services.control.ids)."""
    return ids.find(Model, model_id, "model", None if project is None else Model.project == project)


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
        base = _trained_base(from_model, architecture)
        labels = labels if labels is not None else list(base.labels)
        configuration = {**base.configuration, **(configuration or {})}
    effective = validate_configuration(adapter, configuration or {}, "configuration")
    check_diagnostics(settings, adapter, effective, "configuration")
    return Model.create(name=name, architecture=architecture, task=own_task, labels=labels or [],
                        configuration=configuration or {}, project=project, base_model=from_model)


def clone_model(settings: Settings, source: Model, name: str | None, labels: list[str] | None,
                configuration: dict[str, Any] | None, dataset: str | None) -> Model:
    """A new model of ``source``'s project like ``source`` (architecture, labels, configuration, data
    set, base model) but without its weights; what is given replaces what is copied (``configuration``
    merged over the copied one). It records what it was cloned from."""
    adapter = get_adapter(source.architecture, settings.adapters)
    merged = {**source.configuration, **(configuration or {})}
    effective = validate_configuration(adapter, merged, "configuration")
    check_diagnostics(settings, adapter, effective, "configuration")
    if dataset is not None and dataset_rules.lookup(source.project, dataset) is None:
        dataset = str(resolve_dataset(settings, dataset))  # inside the data roots; read when it trains
    return Model.create(name=name or f"{source.name[:194]}-clone", architecture=source.architecture, task=source.task,
                        labels=list(source.labels) if labels is None else labels, configuration=merged, project=source.project,
                        base_model=source.base_model, cloned_from=source.id, dataset=dataset or source.dataset or last_dataset(source))


def last_dataset(model: Model) -> str | None:
    """The data set of the model's latest training, if any."""
    latest = (Execution.select(Execution.input).where((Execution.model == model.id) & (Execution.function == TRAIN_MODEL))
              .order_by(Execution.created_at.desc()).first())
    return (latest.input or {}).get("dataset") if latest is not None else None


WITH_WEIGHTS: frozenset[ModelStatus] = frozenset({ModelStatus.TRAINED, ModelStatus.PRE_TRAINED})


def _trained_base(model_id: str, architecture: str) -> Model:
    """A model to fine-tune from: trained here, or imported (pre-trained), with its weights."""
    base = Model.get_or_none(Model.id == model_id)
    if base is None or base.status not in WITH_WEIGHTS or not base.artifact_path:
        raise ConfigError(f"model {model_id} is not a trained or pre-trained model",
                          {"from_model": "the id of a trained or pre-trained model"})
    if base.architecture != architecture:
        raise ConfigError(f"model {model_id} is a {base.architecture}, not a {architecture}",
                          {"from_model": f"a trained {architecture} model"})
    return base


def set_status(model_id: str, status: ModelStatus, **fields: Any) -> None:
    """Write a model's status (and ``fields``). The only writer of ``Model.status``."""
    Model.update(status=status, updated_at=now_s(), **fields).where(Model.id == model_id).execute()


TRAINABLE: frozenset[ModelStatus] = frozenset({ModelStatus.CREATED, ModelStatus.TRAINED, ModelStatus.FAILED})


def start_training(model_id: str, execution_id: str | None = None) -> None:
    """Take model ``model_id`` for a training about to be queued (``execution_id``, when its row exists):
    pending, if it is trainable now. Call it inside the transaction that queues the training; raises
    Conflict naming the training that holds the model otherwise, and the caller's transaction rolls back."""
    taken = (Model.update(status=ModelStatus.PENDING, updated_at=now_s())
             .where((Model.id == model_id) & (Model.status.in_(sorted(TRAINABLE)))).execute())
    if taken == 1:
        return
    model = Model.get_by_id(model_id)
    if model.status == ModelStatus.PRE_TRAINED:
        raise Conflict(f"model {model_id} is pre-trained (imported weights, kept as they are): fine-tune them in a new model"
                       f" created with from_model {model_id}", {"status": str(model.status), "from_model": model_id})
    holder = (Execution.select().where((Execution.model == model_id) & (Execution.status.not_in(sorted(TERMINAL_EXECUTION)))
                                       & (Execution.id != (execution_id or "")))
              .order_by(Execution.created_at.desc()).first())
    holding = f"execution {holder.id} ({holder.status})" if holder else "another training"
    raise Conflict(f"model {model_id} is {model.status}: {holding} trains it; wait for it to end or terminate it",
                   {"execution_id": holder.id if holder else "", "status": str(model.status)})


def rerun_training(execution: Execution) -> None:
    """The ``then`` of a manual rerun: take the model of a training again (see start_training), then follow."""
    if execution.model_id and execution.function == TRAIN_MODEL:
        start_training(execution.model_id, execution.id)
    follow(execution)


def follow(execution: Execution) -> None:
    """Bring the model of ``execution`` (a training; others have none) in line with the status
    the execution just took. Meant as the state machine's ``then``: it runs in the same transaction.
    An evaluation or a prediction of a model leaves its status as it is."""
    if not execution.model_id or execution.function != TRAIN_MODEL:
        return
    status = ExecutionStatus(execution.status)
    if status in (ExecutionStatus.PENDING, ExecutionStatus.RERUN):
        set_status(execution.model_id, ModelStatus.PENDING)
    elif status == ExecutionStatus.IN_PROGRESS:
        set_status(execution.model_id, ModelStatus.TRAINING)
    elif status in (ExecutionStatus.FAILED, ExecutionStatus.ABORTED):
        _failed(execution, status)
    elif status in (ExecutionStatus.SUCCESS, ExecutionStatus.TERMINATED):
        _saved_or_kept(execution)


def _weights_source(model: Model) -> str:
    """Whose weights a model holds: the training that saved them, or its import."""
    artifact = Artifact.select(Artifact.execution).where(Artifact.path == model.artifact_path).order_by(Artifact.id.desc()).first()
    if artifact is not None:
        return f"the weights of {artifact.execution_id}"
    return f"the imported weights ({model.imported_from})" if model.imported_from else "its earlier weights"


def _failed(execution: Execution, status: ExecutionStatus) -> None:
    """A training that failed or was aborted: a model that held weights before keeps them and its
    status (trained), saying so; one without any is failed."""
    model = execution.model
    if not model.artifact_path:
        set_status(model.id, ModelStatus.FAILED, status_message=f"last training {execution.id} {status}")
        return
    set_status(model.id, ModelStatus.TRAINED, status_message=f"last training {execution.id} {status}; keeping {_weights_source(model)}")


def _saved_or_kept(execution: Execution) -> None:
    """A training that ended with a saved model (a success, or a stop after which the adapter
    saved) leaves the model trained with it. One that saved nothing leaves the model trained if
    an earlier training succeeded, else created."""
    output = execution.output or {}
    if "model_path" in output:
        Artifact.create(execution=execution.id, attempt=execution.attempt, kind="model", path=output["model_path"],
                        metrics=output.get("metrics") or {})
        set_status(execution.model_id, ModelStatus.TRAINED, artifact_path=output["model_path"], status_message=None,
                   metrics=output.get("metrics") or {}, labels=output.get("labels") or execution.model.labels)
        return
    model = execution.model
    if not model.artifact_path:
        set_status(model.id, ModelStatus.CREATED, status_message=f"last training {execution.id} {execution.status} before it saved a model")
        return
    set_status(model.id, ModelStatus.TRAINED,
               status_message=f"last training {execution.id} {execution.status} before it saved a model; keeping {_weights_source(model)}")
