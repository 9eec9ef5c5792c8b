"""The OpenAPI 3.1 document, built from the endpoint registry and the pydantic models it names.

Served at ``GET /api/v1/openapi.json`` without a token (it describes the API, not its data), like
``/healthz``. Every other endpoint needs ``Authorization: Bearer <token>``.
"""
from __future__ import annotations

import functools
import re
from typing import Any

from flask import Blueprint
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from trainfaas.services.api.registry import MAX_URI_BYTES, Endpoint
from trainfaas.services.api.routes import ENDPOINTS
from trainfaas.services.api.schemas import ErrorBody

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
ERRORS = {
    401: "No token, or an unknown or revoked one.",
    403: "The token's scope does not allow this call.",
    404: "No such object, or one of a project the token cannot reach.",
    409: "The object's current state does not allow this call (the message and fields name the state), or an id prefix"
         " in the path matches several objects (give more characters).",
    414: f"The path (percent-encoded) and query string are longer than the {MAX_URI_BYTES} bytes the API reads.",
    413: "The body is larger than the configured maximum.",
    415: "The body is not sent as application/json.",
    422: "A field is invalid; fields names each one and what it allows.",
    429: "The project is at one of its limits (quota_exceeded), such as its queued executions or its saved blueprints:"
         " nothing was written. The message names the limit and the current count; wait until some start or end (or delete"
         " some), or ask an admin to raise a queued limit (PATCH /api/v1/projects/{name}).",
}


def _error_statuses(endpoint: Endpoint) -> list[int]:
    statuses = [414]  # any request may be too long to read
    if endpoint.access != "public":
        statuses.append(401)
    if endpoint.access in ("write", "admin", "metrics"):
        statuses.append(403)
    body_fields = endpoint.body.model_fields if endpoint.body else {}
    if endpoint.path_parameters or "project" in body_fields or 404 in endpoint.errors:
        statuses.append(404)
    if 409 in endpoint.errors or any(name.endswith("_id") for name in endpoint.path_parameters):
        statuses.append(409)  # an id in a path may be a prefix, which may match several
    if endpoint.body is not None:
        statuses += [413, 415]
    if endpoint.body is not None or endpoint.query is not None or endpoint.path_parameters:
        statuses.append(422)  # a path parameter may hold a NUL character, which no object's id or name has
    if 429 in endpoint.errors:
        statuses.append(429)
    return statuses


def _holds(path: str, fragment: str) -> bool:
    """Whether ``path`` holds ``fragment`` as whole segments: /a/{b} is in /x/a/{b} and /x/a/{b}/c."""
    parts, wanted = path.strip("/").split("/"), fragment.strip("/").split("/")
    return any(parts[i:i + len(wanted)] == wanted for i in range(len(parts) - len(wanted) + 1))


def _links(source: Endpoint) -> dict[str, Any]:
    """The OpenAPI links of ``source``'s successful answer: to every operation all of whose path
    parameters its declared ``links`` fill (one filled and one random would mostly meet a 404).

    Raises ValueError for a declared link that fills no operation's path (a typo, or a renamed path)."""
    found: dict[str, Any] = {}
    fed: set[str] = set()
    for target in ENDPOINTS:
        filled = {}
        for field, fragment in source.links:
            if _holds(target.path, fragment):
                filled[re.findall(r"{(\w+)}", fragment)[0]] = (field, fragment)
        if not filled or set(filled) != set(target.path_parameters):
            continue
        fed.update(fragment for _, fragment in filled.values())
        found[target.name] = {
            "operationId": target.name,
            "parameters": {f"path.{name}": f"$response.body#/{field}" for name, (field, _) in filled.items()},
            "description": f"{target.method} {target.path} of the object this answer names.",
        }
    unused = [fragment for _, fragment in source.links if fragment not in fed]
    if unused:
        raise ValueError(f"{source.method} {source.path}: no operation's path parameters are all filled by {unused}")
    return found


def _query_parameters(model: type[BaseModel], schema: dict[str, Any]) -> list[dict[str, Any]]:
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        # Query values are never null: an absent parameter takes the default.
        options = [option for option in prop.get("anyOf", []) if option.get("type") != "null"]
        value = {**options[0], **{k: v for k, v in prop.items() if k != "anyOf"}} if options else dict(prop)
        value.pop("title", None)
        if value.get("default", 0) is None:
            del value["default"]
        parameters.append({"name": name, "in": "query", "required": False, "schema": value,
                           "description": model.model_fields[name].description or ""})
    return parameters


def _json(ref: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": ref}}}


def _form(endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
    """The multipart/form-data form of an upload endpoint: the body's fields (``body``, their JSON schema) and the file."""
    assert endpoint.body is not None and endpoint.upload is not None
    properties = {name: value for name, value in body.get("properties", {}).items() if name in endpoint.body.model_fields}
    properties[endpoint.upload] = {"type": "string", "format": "binary", "description": "The weights file."}
    return {"type": "object", "properties": properties, "required": [*body.get("required", []), endpoint.upload],
            "additionalProperties": False}


@functools.cache
def build_spec() -> dict[str, Any]:
    """The whole document, of every endpoint of every area (trainfaas.services.api.routes). Cached."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for endpoint in ENDPOINTS:
        wanted.append((endpoint.response, "serialization"))
        if endpoint.body is not None:
            wanted.append((endpoint.body, "validation"))
        if endpoint.query is not None:
            wanted.append((endpoint.query, "validation"))
    refs, definitions = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF)
    schemas = definitions.get("$defs", {})
    error_ref = refs[(ErrorBody, "serialization")]

    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                      for name in endpoint.path_parameters]
        if endpoint.query is not None:
            query_name = refs[(endpoint.query, "validation")]["$ref"].rsplit("/", 1)[1]
            parameters += _query_parameters(endpoint.query, schemas[query_name])
        responses: dict[str, Any] = {str(endpoint.status): {"description": "OK", **_json(refs[(endpoint.response, "serialization")])}}
        if endpoint.links:
            responses[str(endpoint.status)]["links"] = _links(endpoint)
        for status in _error_statuses(endpoint):
            responses[str(status)] = {"description": ERRORS[status], **_json(error_ref)}
        operation: dict[str, Any] = {
            "operationId": endpoint.name, "summary": endpoint.summary, "tags": [endpoint.tag],
            "parameters": parameters, "responses": responses,
            "security": [] if endpoint.access == "public" else [{"instanceToken" if endpoint.access == "instance" else "token": []}],
        }
        if endpoint.media_type is not None:
            responses[str(endpoint.status)] = {"description": "OK", "content": {endpoint.media_type: {"schema": {"type": "string",
                                                                                                                "format": "binary"}}}}
        if endpoint.body is not None:
            operation["requestBody"] = {"required": not endpoint.body_optional, **_json(refs[(endpoint.body, "validation")])}
        if endpoint.body is not None and endpoint.upload is not None:
            operation["requestBody"]["content"]["multipart/form-data"] = {
                "schema": _form(endpoint, schemas[refs[(endpoint.body, "validation")]["$ref"].rsplit("/", 1)[1]])}
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {"title": "trainfaas", "version": "1", "description": __doc__.strip()},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "A project (read, write) or admin token."},
                "instanceToken": {"type": "http", "scheme": "bearer", "description": "The token an instance got when it registered."},
            },
        },
    }


@bp.get("/api/v1/openapi.json")
def openapi() -> dict[str, Any]:
    return build_spec()
