"""Checking a configuration against the options its adapter declares, and naming each bad field."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from trainfaas.adapters.base import ModelAdapter
from trainfaas.services.core.errors import ConfigError


def pydantic_fields(error: ValidationError, prefix: str = "") -> dict[str, str]:
    """Turn a pydantic error into {"field.path": "what is allowed"}."""
    fields = {}
    for item in error.errors():
        path = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        fields[path or prefix or "body"] = item["msg"]
    return fields


def validate_configuration(adapter: type[ModelAdapter], configuration: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The configuration with the adapter's defaults filled in; ConfigError naming each bad field."""
    try:
        return adapter.validate_configuration(configuration)
    except ValidationError as exc:
        raise ConfigError(f"invalid {prefix} for {adapter.__name__}", pydantic_fields(exc, prefix)) from None
