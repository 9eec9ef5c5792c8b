"""Models: create, read, list, and train. Each model belongs to a project.

A model id in a path may be any unique prefix of it (4 characters at least), among the models
the token reaches."""
from __future__ import annotations

from typing import Any

from flask import Blueprint

from trainfaas.services.api import page, paginate, reachable, redis_connection, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import ExecutionOut, ModelClone, ModelCreate, ModelOut, ModelQuery, Page, TrainRequest
from trainfaas.services.api.views import model_view, queued_view
from trainfaas.services.control import blueprints, deletion
from trainfaas.services.control import models as control
from trainfaas.services.control.executions import submit_training
from trainfaas.services.control.tokens import Principal
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.store.records import Model

bp = Blueprint("models", __name__, url_prefix="/api/v1/models")


@endpoint(bp, "POST", "", body=ModelCreate, response=ModelOut, status=201, access="write",
          links={"id": "/models/{model_id}", "service": "/services/{name}/executions"})
def create(body: ModelCreate, principal: Principal) -> dict[str, Any]:
    """Create a model; its configuration is checked against the architecture's adapter options."""
    project = principal.project_for_new(body.project)
    if body.from_model is not None:
        base = Model.get_or_none(Model.id == body.from_model)
        if base is None or not principal.sees(base.project):
            raise ConfigError(f"model {body.from_model} is not a trained or pre-trained model",
                              {"from_model": "the id of a trained or pre-trained model"})
    model = control.create_model(settings(), body.name, body.architecture, body.task, body.labels, body.configuration, project,
                                 body.from_model)
    return model_view(model)


@endpoint(bp, "POST", "/<model_id>/clone", body=ModelClone, response=ModelOut, status=201, access="write",
          links={"id": "/models/{model_id}"})
def clone(model_id: str, body: ModelClone, principal: Principal) -> dict[str, Any]:
    """A new model like this one (architecture, labels, configuration, data set) without its weights,
    with the changes given; it records what it was cloned from."""
    source = control.get_model(model_id, principal.reach)
    return model_view(control.clone_model(settings(), source, body.name, body.labels, body.configuration, body.dataset))


@endpoint(bp, "DELETE", "/<model_id>", response=ModelOut, access="write", errors=(409,))
def delete(model_id: str, principal: Principal) -> dict[str, Any]:
    """Delete a model with its trainings and their files; answers what it was. 409 while a training
    of it is pending or running (naming it), or while another model fine-tunes from it."""
    return model_view(deletion.delete_model(settings(), model_id, principal.reach))


@endpoint(bp, "GET", "", query=ModelQuery, response=Page[ModelOut])
def index(query: ModelQuery, principal: Principal) -> dict[str, Any]:
    """List models, newest first."""
    rows = reachable(Model.select(), Model.project, principal, query.project)
    if query.q:
        rows = rows.where((Model.name.contains(query.q)) | (Model.id == query.q))
    for field in ("name", "architecture", "status"):
        if (value := getattr(query, field)) is not None:
            rows = rows.where(getattr(Model, field) == value)
    items, cursor = paginate(rows, (Model.created_at, Model.id), query.limit, query.cursor)
    return page(items, cursor, model_view)


@endpoint(bp, "GET", "/<model_id>", response=ModelOut)
def show(model_id: str, principal: Principal) -> dict[str, Any]:
    """One model, with its final metrics once trained."""
    return model_view(control.get_model(model_id, principal.reach))


@endpoint(bp, "POST", "/<model_id>/train", body=TrainRequest, response=ExecutionOut, status=202, access="write", errors=(409, 429),
          links={"id": "/executions/{execution_id}"})
def train(model_id: str, body: TrainRequest, principal: Principal) -> dict[str, Any]:
    """Enqueue a training of the model on a data set; options and data set are checked first. With a
    blueprint, its options, settings and data set are taken under the request's own. 409 while the
    model has a training pending or running: a model trains once at a time; 429 while its project is at its queued limit."""
    model = control.get_model(model_id, principal.reach)
    dataset, configuration, execution = body.dataset, body.configuration, body.execution
    if body.blueprint is not None:
        dataset, configuration, execution = blueprints.with_blueprint(body.blueprint, model, dataset, configuration, execution)
    return queued_view(submit_training(settings(), redis_connection(), model, dataset, configuration, execution, body.datasets))
