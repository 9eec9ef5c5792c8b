"""Models: create, read, list, and train."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from services import control
from services.api import body, int_arg, page, redis_connection, settings
from services.api.views import execution_view, model_view
from services.models import Model
from services.schemas import ModelCreate, TrainRequest

bp = Blueprint("models", __name__, url_prefix="/api/v1/models")


@bp.post("")
def create() -> tuple[dict[str, Any], int]:
    data = body(ModelCreate)
    model = control.create_model(settings(), data.name, data.architecture, data.task, data.labels, data.configuration)
    return model_view(model), 201


@bp.get("")
def index() -> dict[str, Any]:
    limit, offset = int_arg("limit", 50, 1, 1000), int_arg("offset", 0, 0, 10**9)
    query = Model.select().order_by(Model.created_at.desc(), Model.id)
    if q := request.args.get("q"):
        query = query.where((Model.name.contains(q)) | (Model.id == q))
    if status := request.args.get("status"):
        query = query.where(Model.status == status)
    return page([model_view(m) for m in query.limit(limit).offset(offset)], limit, offset, query.count())


@bp.get("/<model_id>")
def show(model_id: str) -> dict[str, Any]:
    return model_view(control.get_model(model_id))


@bp.post("/<model_id>/train")
def train(model_id: str) -> tuple[dict[str, Any], int]:
    model = control.get_model(model_id)
    data = body(TrainRequest)
    execution = control.submit_training(settings(), redis_connection(), model, data.dataset, data.configuration, data.execution)
    return execution_view(execution), 202
