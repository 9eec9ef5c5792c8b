"""One resolver of ``module:attr`` references (adapters, functions, backends, data set writers)."""
from __future__ import annotations

from importlib import import_module
from typing import Any

from trainfaas.services.core.errors import ConfigError

# Top-level names trainfaas used before its one namespace: a reference or an import of them is
# code written against the old layout, and gets a message that says what to write instead.
OLD_TOP_LEVEL = ("services", "adapters", "functions", "scheduler", "deploy")


def old_name_hint(missing: str | None) -> str:
    """What to write instead of an import of a pre-namespace name, or "" if ``missing`` is not one."""
    top = (missing or "").partition(".")[0]
    if top not in OLD_TOP_LEVEL:
        return ""
    if top == "adapters":
        return ("; trainfaas installs one import name now: write `from trainfaas.adapters import ModelAdapter, Options` "
                f"instead of importing {missing!r}")
    return f"; trainfaas installs one import name now: {missing!r} is trainfaas.{missing}"


def resolve(reference: str, what: str = "reference") -> Any:
    """Import ``module:attr`` and return the attribute; a ConfigError names what is wrong."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what} {reference!r} must look like module:attr", {what: reference})
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import {what} {reference}: {exc}{old_name_hint(exc.name)}", {what: reference}) from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ConfigError(f"cannot load {what} {reference}: {module_name} has no {attr!r}", {what: reference}) from exc
