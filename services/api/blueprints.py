"""Blueprints: named training configurations of a project (saved ones and the built-in quick and
full), and the configuration an execution ran with, in the same shape."""
from __future__ import annotations

from typing import Any

from flask import Blueprint as Area

from trainfaas.services.api import paginate, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import (
    BlueprintCreate,
    BlueprintOut,
    BlueprintQuery,
    BlueprintShowQuery,
    Page,
    TrainingConfigOut,
)
from trainfaas.services.api.views import blueprint_view
from trainfaas.services.control import blueprints as control
from trainfaas.services.control.executions import get_execution
from trainfaas.services.control.tokens import Principal
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.store.records import Blueprint

bp = Area("blueprints", __name__, url_prefix="/api/v1")


@endpoint(bp, "POST", "/blueprints", body=BlueprintCreate, response=BlueprintOut, status=201, access="write", errors=(404, 409, 429),
          links={"name": "/blueprints/{name}"})
def create(body: BlueprintCreate, principal: Principal) -> dict[str, Any]:
    """Save a blueprint from a training (``from_execution``) or a configuration (``config``). 409 when the
    project has one of that name, unless ``replace``."""
    project = principal.project_for_new(body.project)
    if (body.from_execution is None) == (body.config is None):
        both = "give either" if body.from_execution is None else "give only one of"
        raise ConfigError(f"{both} from_execution or config", {"from_execution": "an execution id, or config instead"})
    if body.config is not None:
        saved = control.save(settings(), project, body.name, body.description, body.config.model_dump(exclude_none=True),
                             replace=body.replace)
    else:
        source = get_execution(body.from_execution or "", principal.reach)
        saved = control.save(settings(), project, body.name, body.description, control.of_execution(source.id, principal.reach),
                             source_execution=source.id, replace=body.replace)
    return blueprint_view(saved)


@endpoint(bp, "GET", "/blueprints", query=BlueprintQuery, response=Page[BlueprintOut], errors=(404,))
def index(query: BlueprintQuery, principal: Principal) -> dict[str, Any]:
    """The project's blueprints: the built-in quick and full first, then the saved ones by name."""
    project = principal.project_for_new(query.project)
    rows = Blueprint.select().where(Blueprint.project == project)
    items, cursor = paginate(rows, (Blueprint.name, Blueprint.id), query.limit, query.cursor, descending=False)
    built_in = [] if query.cursor else [control.built_in(name, project, settings(), None, listed=True) for name in control.BUILT_IN]
    return {"items": built_in + [blueprint_view(row) for row in items], "next_cursor": cursor}


@endpoint(bp, "GET", "/blueprints/<name>", query=BlueprintShowQuery, response=BlueprintOut)
def show(name: str, query: BlueprintShowQuery, principal: Principal) -> dict[str, Any]:
    """One blueprint. ``full`` needs ``architecture`` and describes each of its options."""
    project = principal.project_for_new(query.project)
    if name in control.BUILT_IN:
        return control.built_in(name, project, settings(), query.architecture)
    return blueprint_view(control.get(name, project))


@endpoint(bp, "DELETE", "/blueprints/<name>", query=BlueprintShowQuery, response=BlueprintOut, access="write")
def delete(name: str, query: BlueprintShowQuery, principal: Principal) -> dict[str, Any]:
    """Delete a saved blueprint; trainings that used it keep what they ran with."""
    project = principal.project_for_new(query.project)
    return blueprint_view(control.delete(name, project))


@endpoint(bp, "GET", "/executions/<execution_id>/config", response=TrainingConfigOut)
def execution_config(execution_id: str, principal: Principal) -> dict[str, Any]:
    """What a training ran with, every option filled in: the body a blueprint or ``trainfaas train --config-file`` takes."""
    return control.of_execution(execution_id, principal.reach)
