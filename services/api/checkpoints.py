"""Checkpoints: an execution's list, a model made of one, deleting one; and removing an execution
from training.

A checkpoint id in a path may be any unique prefix of it (4 characters at least), among the
checkpoints of the executions the token reaches."""
from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import Field

from trainfaas.services.api import iso, page, paginate, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import ExecutionOut, ListQuery, ModelOut, Out, Page, Strict, Timestamp
from trainfaas.services.api.views import execution_view, model_view
from trainfaas.services.control import checkpoints as control
from trainfaas.services.control import removal
from trainfaas.services.control.executions import get_execution
from trainfaas.services.control.tokens import Principal
from trainfaas.services.store.records import Artifact

bp = Blueprint("checkpoints", __name__, url_prefix="/api/v1")


class CheckpointOut(Out):
    id: str = Field(description="The checkpoint's id (a unique prefix of 4 characters or more also finds it).")
    execution_id: str
    attempt: int
    step: int | None = Field(description="The optimizer step (an epoch, for adapters that count epochs) it was written after.")
    metrics: dict[str, Any] = Field(description="The figures the adapter reported with it.")
    size: int | None = Field(description="Bytes of its file (or folder); null once the file is gone.")
    created: str | None = Timestamp
    is_best: bool = Field(description="The best checkpoint of the execution by the adapter's monitored figure.")
    is_last: bool = Field(description="The newest checkpoint of the execution.")


class CheckpointModel(Strict):
    """The model a checkpoint becomes."""

    name: str | None = Field(None, min_length=1, max_length=200, description="Default: <model name>-step-<step>.")


def checkpoint_view(row: Artifact, newest: int | None = None) -> dict[str, Any]:
    return {"id": row.uid, "execution_id": row.execution_id, "attempt": row.attempt, "step": row.step, "metrics": row.metrics or {},
            "size": control.size_of(row.path), "created": iso(row.at), "is_best": bool(row.is_best), "is_last": row.id == newest}


def _newest(execution_id: str) -> int | None:
    row = control.of_execution(execution_id).order_by(*control.NEWEST_FIRST).first()
    return row.id if row is not None else None


@endpoint(bp, "GET", "/executions/<execution_id>/checkpoints", query=ListQuery, response=Page[CheckpointOut])
def index(execution_id: str, query: ListQuery, principal: Principal) -> dict[str, Any]:
    """The execution's checkpoints, oldest first: its best one and its newest ``keep_checkpoints``."""
    execution = get_execution(execution_id, principal.reach)
    newest = _newest(execution.id)
    rows = Artifact.select().where((Artifact.execution == execution.id) & (Artifact.kind == control.KIND))
    return page(*paginate(rows, (Artifact.id,), query.limit, query.cursor, descending=False), lambda row: checkpoint_view(row, newest))


@endpoint(bp, "POST", "/checkpoints/<checkpoint_id>/model", body=CheckpointModel, response=ModelOut, status=201, access="write",
          errors=(409,), links={"id": "/models/{model_id}"}, body_optional=True)
def to_model(checkpoint_id: str, body: CheckpointModel, principal: Principal) -> dict[str, Any]:
    """A new trained model with a copy of the checkpoint's weights and its training's architecture, labels and
    configuration; it records the execution and step it came from. 409 when its file is gone."""
    return model_view(control.to_model(settings(), checkpoint_id, principal.reach, body.name))


@endpoint(bp, "DELETE", "/checkpoints/<checkpoint_id>", response=CheckpointOut, access="write", errors=(409,),
          links={"id": "/checkpoints/{checkpoint_id}"})
def delete(checkpoint_id: str, principal: Principal) -> dict[str, Any]:
    """Delete a checkpoint and its file; answers what it was. 409 for the one a waiting or running rerun resumes from."""
    row = control.delete(settings(), checkpoint_id, principal.reach)
    return checkpoint_view(row)


@endpoint(bp, "POST", "/executions/<execution_id>/remove", response=ExecutionOut, status=202, access="write", errors=(409,),
          links={"id": "/executions/{execution_id}"})
def remove(execution_id: str, principal: Principal) -> dict[str, Any]:
    """Remove an execution from training: stop it if it is waiting or running (as terminate does) and leave it out
    of the execution list unless ``include_removed=true``. It keeps its rows and files until it is deleted."""
    return execution_view(removal.remove(get_execution(execution_id, principal.reach).id))
