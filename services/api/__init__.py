"""API blueprints, one per area, and the helpers they share."""
from __future__ import annotations

from typing import Any, TypeVar

import redis
from flask import current_app, request
from pydantic import BaseModel

from services.config import Settings
from services.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


def settings() -> Settings:
    return current_app.config["SETTINGS"]  # type: ignore[no-any-return]


def redis_connection() -> redis.Redis:
    return current_app.extensions["redis"]  # type: ignore[no-any-return]


def body(schema: type[T]) -> T:
    """Parse the JSON body into ``schema``; a wrong content type or bad JSON is a 4xx."""
    if not request.is_json:
        from werkzeug.exceptions import UnsupportedMediaType

        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    data = request.get_json(silent=True)
    if data is None and request.get_data():
        raise ConfigError("the body is not valid JSON", {"body": "a JSON object"})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the body must be a JSON object", {"body": "a JSON object"})
    return schema.model_validate(data)


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer", {name: f"an integer from {low} to {high}"}) from None
    if not low <= value <= high:
        raise ConfigError(f"{name} is out of range", {name: f"an integer from {low} to {high}"})
    return value


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def page(items: list[dict[str, Any]], limit: int, offset: int, total: int) -> dict[str, Any]:
    return {"items": items, "limit": limit, "offset": offset, "total": total}
