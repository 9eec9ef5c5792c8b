"""Checking a configuration against the options its adapter declares, and naming each bad field."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from trainfaas.adapters.base import ModelAdapter
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.settings import Settings

# The option of a diagnostic adapter that holds memory; TRAINFAAS_DIAGNOSTICS_MAX_ALLOCATE_MB bounds it.
ALLOCATE_OPTION = "allocate_mb"


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


def check_diagnostics(settings: Settings, adapter: type[ModelAdapter], effective: dict[str, Any], prefix: str) -> None:
    """Refuse (ConfigError naming each field) a configuration whose fault-injection options
    (``adapter.diagnostic_options``) differ from their defaults unless ``settings.diagnostics``
    is on, and an ``allocate_mb`` above ``settings.diagnostics_max_allocate_mb`` in any case.
    ``effective`` is the configuration with the defaults filled in (validate_configuration)."""
    declared = adapter.Options.model_fields
    set_ = [name for name in adapter.diagnostic_options if name in declared and effective.get(name) != declared[name].default]
    if set_ and not settings.diagnostics:
        raise ConfigError(
            f"{', '.join(set_)}: fault injection of the diagnostic {adapter.__name__} is off on this server",
            {f"{prefix}.{name}": "a fault-injection option: only on a server that runs with TRAINFAAS_DIAGNOSTICS=1"
             for name in set_})
    allocate = effective.get(ALLOCATE_OPTION) if ALLOCATE_OPTION in adapter.diagnostic_options else None
    if isinstance(allocate, (int, float)) and allocate > settings.diagnostics_max_allocate_mb:
        raise ConfigError(
            f"{ALLOCATE_OPTION} {allocate} is above this server's TRAINFAAS_DIAGNOSTICS_MAX_ALLOCATE_MB",
            {f"{prefix}.{ALLOCATE_OPTION}": f"from 0 to {settings.diagnostics_max_allocate_mb} (MB)"})
