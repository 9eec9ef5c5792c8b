"""The Flask app factory: settings -> database -> Redis -> blueprints -> one error handler."""
from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from services import queues
from services.config import Settings, load_settings
from services.control import pydantic_fields
from services.db import database, open_database
from services.errors import TrainfaasError


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the API. ``settings`` defaults to the environment's; the schema must be migrated."""
    settings = settings or load_settings()
    app = Flask("trainfaas")
    app.config.update(MAX_CONTENT_LENGTH=16 * 1024 * 1024, JSON_SORT_KEYS=False, SETTINGS=settings)
    app.config.update(test_config or {})
    open_database(settings.database_url)
    app.extensions["redis"] = queues.connect(settings.redis_url)

    @app.before_request
    def _connect() -> None:
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(_exc: BaseException | None) -> None:
        if not database.is_closed():
            database.close()

    _register_error_handlers(app)
    from services.api import executions, health, instances, models, services

    for blueprint in (health.bp, models.bp, executions.bp, services.bp, instances.bp):
        app.register_blueprint(blueprint)
    return app


def error_body(code: str, message: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(TrainfaasError)
    def _trainfaas(exc: TrainfaasError) -> Any:
        return jsonify(error_body(exc.code, exc.message, exc.fields)), exc.http_status

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Any:
        return jsonify(error_body("invalid", "the request body is invalid", pydantic_fields(exc))), 422

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error_body(code, exc.description or exc.name)), exc.code or 500
