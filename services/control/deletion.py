"""Deleting executions and models, with their files.

An execution is deleted only once it has ended, a model only while none of its trainings is
pending or running and no other model fine-tunes from it. Rows go in one transaction (status log,
attempts, logs, metrics and artifacts with their execution); files go after it commits: each
execution's own folder, ``<home>/executions/<id>``, and nothing outside it (links inside are
removed, never followed).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from trainfaas.services.control.executions import get_execution
from trainfaas.services.control.imports import imported_folder
from trainfaas.services.control.models import get_model
from trainfaas.services.core.errors import Conflict
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import TERMINAL_EXECUTION, ModelStatus
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Artifact, Attempt, Execution, LogLine, MetricSample, Model, StatusLog


def execution_folder(settings: Settings, execution_id: str) -> Path | None:
    """The execution's own folder, if it is one inside ``<home>/executions`` (and not a link out)."""
    root = settings.executions_dir.resolve()
    folder = settings.executions_dir / execution_id
    if folder.is_symlink() or not folder.is_dir() or folder.resolve().parent != root:
        return None
    return folder


def remove_files(settings: Settings, execution_ids: list[str]) -> None:
    for execution_id in execution_ids:
        folder = execution_folder(settings, execution_id)
        if folder is not None:
            shutil.rmtree(folder)  # removes links inside; never follows them


def delete_execution(settings: Settings, execution_id: str, project: str | None) -> Execution:
    """Delete an ended execution and its files. Conflict while it has not ended, or when it trained
    the weights its model holds (delete the model instead)."""
    execution = get_execution(execution_id, project)
    if execution.status not in TERMINAL_EXECUTION:
        raise Conflict(f"execution {execution.id} is {execution.status}: terminate it, or wait for it to end",
                       {"status": execution.status})
    model = Model.get_or_none(Model.id == execution.model_id) if execution.model_id else None
    if model is not None and model.artifact_path and _inside(model.artifact_path, settings.executions_dir / execution.id):
        raise Conflict(f"execution {execution.id} trained the weights model {model.id} holds: delete the model instead",
                       {"model_id": model.id})
    with database.atomic():
        _delete_ended(execution)
    remove_files(settings, [execution.id])
    return execution


def _delete_ended(execution: Execution) -> None:
    """Delete the execution's rows, in the caller's transaction; Conflict (rolling it back) if a
    rerun took it in between."""
    for dependent in (StatusLog, Attempt, LogLine, MetricSample, Artifact):
        dependent.delete().where(dependent.execution == execution.id).execute()
    ended = [status.value for status in TERMINAL_EXECUTION]
    if not Execution.delete().where((Execution.id == execution.id) & Execution.status.in_(ended)).execute():
        raise Conflict(f"execution {execution.id} was queued again meanwhile", {"status": "an ended execution"})


def delete_model(settings: Settings, model_id: str, project: str | None) -> Model:
    """Delete a model with its trainings and their files. Conflict while one of its trainings is
    pending or running (naming it) or while another model fine-tunes from it."""
    model = get_model(model_id, project)
    trainings = list(Execution.select().where(Execution.model == model.id))
    busy = next((e for e in trainings if e.status not in TERMINAL_EXECUTION), None)
    if busy is not None:
        raise Conflict(f"model {model.id} has a training that is {busy.status}: terminate it first", {"execution_id": busy.id})
    child = Model.get_or_none(Model.base_model == model.id)
    if child is not None:
        raise Conflict(f"model {child.id} fine-tunes from model {model.id}: delete it first", {"model_id": child.id})
    with database.atomic():
        for execution in trainings:
            _delete_ended(execution)
        trainable = [status.value for status in ModelStatus if status not in (ModelStatus.PENDING, ModelStatus.TRAINING)]
        if not Model.delete().where((Model.id == model.id) & Model.status.in_(trainable)).execute():
            raise Conflict(f"model {model.id} started a training meanwhile: terminate it first", {"status": "a model not training"})
    remove_files(settings, [execution.id for execution in trainings])
    if model.imported_from:
        shutil.rmtree(imported_folder(settings, model.id), ignore_errors=True)
    return model


def _inside(path: str, folder: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False
