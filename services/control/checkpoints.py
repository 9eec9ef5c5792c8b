"""Checkpoints: each one an immutable file of its own (``<attempt output>/checkpoints/step-<step>.<suffix>``,
kept by the work process's context), recorded with its step, metrics and whether it is the best.

An execution keeps its best checkpoint and its newest ``keep_checkpoints`` (an execution setting,
default TRAINFAAS_KEEP_CHECKPOINTS); older ones are deleted, file and row together, as new ones
arrive, never the one a waiting or running attempt resumes from. A checkpoint becomes a model of
its own (:func:`to_model`) by a copy of its weights in the model's own folder
(``<home>/models/<model id>``), so no model depends on a checkpoint file.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from trainfaas.adapters.catalog import get_adapter
from trainfaas.services.control import ids, models
from trainfaas.services.control.attempts import inside_attempt, last_checkpoint
from trainfaas.services.core.errors import ConfigError, Conflict
from trainfaas.services.core.protocol import TRAIN_MODEL, Checkpoint
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import ExecutionStatus, ModelStatus
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Artifact, Execution, Model, new_id

KIND = "checkpoint"
NEWEST_FIRST = (Artifact.attempt.desc(), Artifact.step.desc(), Artifact.id.desc())
WAITING_OR_RUNNING = (ExecutionStatus.PENDING, ExecutionStatus.RERUN, ExecutionStatus.IN_PROGRESS)


def models_dir(settings: Settings) -> Path:
    """Where models made from checkpoints keep their weights, one folder per model id."""
    return settings.home / "models"


def of_execution(execution_id: str) -> Any:
    """The execution's checkpoint rows, oldest first."""
    return (Artifact.select().where((Artifact.execution == execution_id) & (Artifact.kind == KIND))
            .order_by(Artifact.attempt, Artifact.step, Artifact.id))


def get_checkpoint(checkpoint_id: str, project: str | None = None) -> Artifact:
    """The checkpoint whose id is (or starts with) ``checkpoint_id``, of an execution of ``project``
    (None: any). NotFound or, for a prefix of several, Conflict (see ids.find)."""
    scope = Artifact.kind == KIND
    if project is not None:
        scope &= Artifact.execution.in_(Execution.select(Execution.id).where(Execution.project == project))
    return ids.find(Artifact, checkpoint_id, "checkpoint", scope, key=Artifact.uid)


def record(settings: Settings, execution_id: str, attempt: int, event: Checkpoint, at: float) -> Artifact:
    """Store a reported checkpoint (one row per file: a step reported again, as last and as best, updates
    it), then apply the execution's retention. Call it inside the report's transaction."""
    row = Artifact.get_or_none((Artifact.execution == execution_id) & (Artifact.kind == KIND) & (Artifact.path == event.path))
    if row is None:
        row = Artifact.create(execution=execution_id, attempt=attempt, kind=KIND, path=event.path, step=event.step,
                              metrics=event.metrics, at=at, is_best=event.best)
    else:
        Artifact.update(step=event.step, metrics=event.metrics, at=at, is_best=bool(row.is_best or event.best)).where(
            Artifact.id == row.id).execute()
    if event.best:
        Artifact.update(is_best=False).where((Artifact.execution == execution_id) & (Artifact.kind == KIND)
                                             & (Artifact.id != row.id)).execute()
    prune(settings, execution_id)
    return row


def resumed_from(execution: Execution) -> Artifact | None:
    """The checkpoint the waiting or running attempt of ``execution`` resumes from, if any."""
    if execution.status not in WAITING_OR_RUNNING:
        return None
    return last_checkpoint(execution.id, execution.attempt, execution.resume_from)


def prune(settings: Settings, execution_id: str) -> list[str]:
    """Delete the checkpoints the execution no longer keeps: all but its best and its newest
    ``keep_checkpoints``, and the one its current attempt resumes from. Returns the paths deleted."""
    execution = Execution.get_or_none(Execution.id == execution_id)
    if execution is None:
        return []
    keep = execution.keep_checkpoints or settings.keep_checkpoints
    resumed = resumed_from(execution)
    rows = list(Artifact.select().where((Artifact.execution == execution_id) & (Artifact.kind == KIND)).order_by(*NEWEST_FIRST))
    kept = {row.path for index, row in enumerate(rows) if index < keep or row.is_best or (resumed and row.id == resumed.id)}
    gone = [row for row in rows if row.path not in kept]
    if gone:
        Artifact.delete().where(Artifact.id.in_([row.id for row in gone])).execute()
    for path in {row.path for row in gone}:
        remove_file(settings, execution_id, path)
    return [row.path for row in gone]


def remove_file(settings: Settings, execution_id: str, path: str) -> None:
    """Delete a checkpoint's file (or folder) if it lies inside the execution's own folder."""
    root = (settings.executions_dir / execution_id).resolve()
    target = Path(path)
    try:
        if not target.parent.resolve().is_relative_to(root):
            return
    except (OSError, ValueError, RuntimeError):
        return
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)


def size_of(path: str) -> int | None:
    """Bytes of a checkpoint's file, or of the files in its folder; None once it is gone."""
    target = Path(path)
    try:
        if target.is_symlink():
            return None  # an adapter's link says nothing of what it points to
        if target.is_file():
            return target.stat().st_size
        if target.is_dir():
            return sum(item.stat().st_size for item in target.rglob("*") if item.is_file() and not item.is_symlink())
    except OSError:
        return None
    return None


def delete(settings: Settings, checkpoint_id: str, project: str | None) -> Artifact:
    """Delete a checkpoint's row and file. Conflict for the one a waiting or running attempt resumes from."""
    row = get_checkpoint(checkpoint_id, project)
    execution = Execution.get_by_id(row.execution_id)
    resumed = resumed_from(execution)
    if resumed is not None and resumed.id == row.id:
        raise Conflict(f"checkpoint {row.uid} is the one execution {execution.id} ({execution.status}) resumes from:"
                       " terminate it first, or wait for it to end", {"checkpoint_id": row.uid, "status": execution.status})
    Artifact.delete().where(Artifact.id == row.id).execute()
    if not Artifact.select().where((Artifact.execution == execution.id) & (Artifact.path == row.path)).exists():
        remove_file(settings, execution.id, row.path)
    return row


def to_model(settings: Settings, checkpoint_id: str, project: str | None, name: str | None) -> Model:
    """A new trained model of the checkpoint's project, with the architecture, labels and configuration
    of its training and a copy of its weights; it records the execution and step it came from."""
    row = get_checkpoint(checkpoint_id, project)
    execution = Execution.get_by_id(row.execution_id)
    source = Model.get_or_none(Model.id == execution.model_id) if execution.model_id else None
    if execution.function != TRAIN_MODEL or source is None:
        raise Conflict(f"checkpoint {row.uid} is of execution {execution.id}, which trains no model (or its model is gone)",
                       {"checkpoint_id": "a checkpoint of a training of a model"})
    if not Path(row.path).exists():
        raise Conflict(f"the file of checkpoint {row.uid} is gone", {"checkpoint_id": "a checkpoint whose file exists"})
    # Checked again: the adapter may have replaced the file by a link since it reported it.
    inside_attempt(settings, execution.id, row.attempt, row.path, "checkpoint_id")
    if Path(row.path).is_symlink():
        raise ConfigError(f"checkpoint {row.uid} is a link, not a file", {"checkpoint_id": "a checkpoint that is a file or folder"})
    adapter = get_adapter(source.architecture, settings.adapters)
    model_id = new_id()
    folder = models_dir(settings) / model_id
    configuration = dict((execution.input or {}).get("configuration") or source.configuration)
    try:
        folder.mkdir(parents=True)
        adapter.model_from_checkpoint(Path(row.path), folder, source.architecture, list(source.labels), configuration)
        with database.atomic():
            model = Model.create(id=model_id, project=execution.project, name=name or f"{source.name[:180]}-step-{row.step}",
                                 architecture=source.architecture, task=source.task, labels=list(source.labels),
                                 configuration=configuration, dataset=(execution.input or {}).get("dataset") or source.dataset,
                                 source_execution=execution.id, source_step=row.step)
            models.set_status(model.id, ModelStatus.TRAINED, artifact_path=str(folder.resolve()), metrics=dict(row.metrics or {}))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Model.get_by_id(model_id)


def remove_model_folder(settings: Settings, model_id: str) -> None:
    """Delete the folder of a model made from a checkpoint, if it has one (and it is a real folder)."""
    folder = models_dir(settings) / model_id
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder)
