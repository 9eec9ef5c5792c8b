"""The Flask app factory: settings -> database -> Redis -> blueprints -> one error handler.

Every error leaves as ``{"error": {"code", "message", "fields"}}`` with the status of its class
(trainfaas.services.core.errors), pydantic's validation errors as 422 naming each field path.
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, RequestURITooLarge

from trainfaas.services.api import openapi
from trainfaas.services.api.metrics import instrument
from trainfaas.services.api.registry import MAX_URI_BYTES
from trainfaas.services.api.routes import AREAS
from trainfaas.services.control.configuration import pydantic_fields
from trainfaas.services.core.errors import TrainfaasError
from trainfaas.services.core.settings import Settings, load_settings
from trainfaas.services.store import queues
from trainfaas.services.store.database import database, open_database
from trainfaas.services.ui.routes import bp as ui

log = logging.getLogger("trainfaas.api")
# Probes that must answer without the database (liveness) or check it themselves (readiness).
PROBES = frozenset({"/healthz", "/readyz"})


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the API. ``settings`` defaults to the environment's; the schema must be migrated."""
    settings = settings or load_settings()
    # No /static route: every route is an endpoint of the registry, or a page of the web UI under /ui/.
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False, SETTINGS=settings)
    app.config.update(test_config or {})
    open_database(settings.database_url, pooled=True)  # one connection per request, taken from a pool
    app.extensions["redis"] = queues.connect(settings.redis_url)

    @app.before_request
    def _connect() -> None:
        if len(quote(request.path)) + len(request.query_string) > MAX_URI_BYTES:
            raise RequestURITooLarge(f"the path and query string are longer than {MAX_URI_BYTES} bytes")
        # Instances send batched reports and tracebacks: they get a larger body limit than users.
        if request.path.startswith("/api/v1/instances/"):
            request.max_content_length = settings.max_instance_body_bytes
        # Weights are uploaded to one endpoint only, as a multipart form streamed to disk.
        if request.path == "/api/v1/models/import" and request.mimetype == "multipart/form-data":
            request.max_content_length = settings.max_import_bytes
        if request.path not in PROBES:
            database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(_exc: BaseException | None) -> None:
        if not database.is_closed():
            database.close()

    _register_error_handlers(app)
    for blueprint in blueprints():
        app.register_blueprint(blueprint)
    instrument(app)  # requests by route and status, for /metrics
    app.register_blueprint(ui)
    return app


def blueprints() -> list[Blueprint]:
    """Every area of the API and the OpenAPI document that describes them."""
    return [*AREAS, openapi.bp]


def error_body(code: str, message: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(TrainfaasError)
    def _trainfaas(exc: TrainfaasError) -> Any:
        return jsonify(error_body(exc.code, exc.message, exc.fields)), exc.http_status

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Any:
        return jsonify(error_body("invalid", "the request is invalid", pydantic_fields(exc))), 422

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        # A bug: log it with its traceback, answer in the same shape as every other error.
        log.exception("%s %s failed", request.method, request.path)
        return jsonify(error_body("internal_error", f"the server failed: {type(exc).__name__}; see the API log")), 500

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        fields = {"body": f"at most {request.max_content_length} bytes"} if exc.code == 413 else {}
        fields = {"Content-Type": "application/json"} if exc.code == 415 else fields
        fields = {"uri": f"the path and query string, at most {MAX_URI_BYTES} bytes"} if exc.code == 414 else fields
        return jsonify(error_body(code, exc.description or exc.name, fields)), exc.code or 500
