"""Projects and API tokens. Only admin tokens create and change projects (their quotas too) and
manage tokens; a project token lists and reads its own project, with its limits and usage."""
from __future__ import annotations

from typing import Any

from flask import Blueprint

from trainfaas.services.api import page, paginate, settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import (
    NamedListQuery,
    Page,
    ProjectCreate,
    ProjectOut,
    ProjectPatch,
    TokenCreate,
    TokenCreated,
    TokenOut,
)
from trainfaas.services.api.views import project_view, token_view
from trainfaas.services.control import quotas
from trainfaas.services.control import tokens as auth
from trainfaas.services.control.tokens import Principal
from trainfaas.services.core.errors import Conflict, NotFound
from trainfaas.services.store.records import Project, Token

bp = Blueprint("projects", __name__, url_prefix="/api/v1")


@endpoint(bp, "POST", "/projects", body=ProjectCreate, response=ProjectOut, status=201, access="admin", errors=(409,),
          links={"name": "/projects/{name}"})
def create_project(body: ProjectCreate, principal: Principal) -> dict[str, Any]:
    """Create a project."""
    if Project.get_or_none(Project.name == body.name) is not None:
        raise Conflict(f"project {body.name} already exists", {"name": "a name no other project has"})
    return _view(Project.create(name=body.name, description=body.description))


@endpoint(bp, "GET", "/projects", query=NamedListQuery, response=Page[ProjectOut])
def list_projects(query: NamedListQuery, principal: Principal) -> dict[str, Any]:
    """The projects the token reaches, by name."""
    rows = Project.select()
    if not principal.is_admin:
        rows = rows.where(Project.name == principal.project)
    if query.q:
        rows = rows.where(Project.name.contains(query.q))
    items, cursor = paginate(rows, (Project.name,), query.limit, query.cursor, descending=False)
    return page(items, cursor, _view)


@endpoint(bp, "GET", "/projects/<name>", response=ProjectOut)
def show_project(name: str, principal: Principal) -> dict[str, Any]:
    """One project."""
    project = Project.get_or_none(Project.name == name)
    if project is None or not principal.sees(name):
        raise NotFound(f"project {name} does not exist")
    return _view(project)


@endpoint(bp, "PATCH", "/projects/<name>", body=ProjectPatch, response=ProjectOut, access="admin")
def update_project(name: str, body: ProjectPatch, principal: Principal) -> dict[str, Any]:
    """Change a project's description or quotas (max_queued, max_running; null: back to the server's default)."""
    changes = {key: getattr(body, key) for key in body.model_fields_set}
    if changes.get("description") is None:
        changes.pop("description", None)
    return _view(quotas.update_project(name, **changes))


def _view(project: Project) -> dict[str, Any]:
    return project_view(project, settings())


@endpoint(bp, "POST", "/tokens", body=TokenCreate, response=TokenCreated, status=201, access="admin",
          links={"id": "/tokens/{token_id}"})
def create_token(body: TokenCreate, principal: Principal) -> dict[str, Any]:
    """Create a token; the answer holds its secret, shown this once."""
    token, secret = auth.create_token(body.scope, body.project, body.name)
    return {**token_view(token), "token": secret}


@endpoint(bp, "GET", "/tokens", query=NamedListQuery, response=Page[TokenOut], access="admin")
def list_tokens(query: NamedListQuery, principal: Principal) -> dict[str, Any]:
    """Tokens, newest first, without their secrets."""
    rows = Token.select()
    if query.q:
        rows = rows.where((Token.name.contains(query.q)) | (Token.id == query.q) | (Token.project == query.q))
    items, cursor = paginate(rows, (Token.created_at, Token.id), query.limit, query.cursor)
    return page(items, cursor, token_view)


@endpoint(bp, "DELETE", "/tokens/<token_id>", response=TokenOut, access="admin")
def revoke_token(token_id: str, principal: Principal) -> dict[str, Any]:
    """Revoke a token: every call with it answers 401 from now on."""
    return token_view(auth.revoke_token(token_id))
