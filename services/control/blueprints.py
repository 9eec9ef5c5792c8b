"""Blueprints: named, saved training configurations of a project, and the configuration of an
execution in the same shape (what ``trainfaas executions config`` prints and ``trainfaas train
--config-file`` takes).

A configuration document is ``{"architecture", "dataset", "configuration", "execution"}``: the
architecture, the data set (or null), the adapter options and the execution settings. Two
blueprints are built in and belong to every project: ``quick`` (no options: the adapter decides
from the data) and ``full`` (every option of an architecture with its default, type, range and
meaning). A training given a blueprint takes its options and settings, under what the request
itself says.
"""
from __future__ import annotations

from typing import Any

import peewee

from trainfaas.adapters.architectures import options
from trainfaas.adapters.catalog import get_adapter
from trainfaas.services.control.configuration import validate_configuration
from trainfaas.services.control.executions import ExecutionSettings, get_execution
from trainfaas.services.core.errors import ConfigError, Conflict, NotFound, QuotaExceeded
from trainfaas.services.core.protocol import TRAIN_MODEL
from trainfaas.services.core.settings import Settings
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Blueprint, Model

QUICK, FULL = "quick", "full"
MAX_BLUEPRINTS = 1000  # saved blueprints a project may hold
BUILT_IN = {QUICK: "No options: the adapter chooses each one from the data set (and says why in the log).",
            FULL: "Every option of an architecture with its default, type, range and meaning."}
SETTINGS = tuple(name for name in ExecutionSettings.model_fields if name != "run_as_process")


def document(architecture: str | None, dataset: str | None, configuration: dict[str, Any], execution: dict[str, Any]) -> dict[str, Any]:
    return {"architecture": architecture, "dataset": dataset, "configuration": configuration, "execution": execution}


def of_execution(execution_id: str, project: str | None) -> dict[str, Any]:
    """The effective configuration of a training: what it ran with, every option filled in."""
    execution = get_execution(execution_id, project)
    if execution.function != TRAIN_MODEL:
        raise ConfigError(f"execution {execution.id} runs {execution.function}, not a training",
                          {"execution_id": "the id of a training (train_model) execution"})
    given = execution.input or {}
    settings = {name: getattr(execution, name) for name in SETTINGS if getattr(execution, name) is not None}
    version = (given.get("dataset_versions") or {}).get("all")  # a registered data set's version: named, not its folder
    dataset = version["reference"] if version else given.get("dataset")
    return document(execution.service.architecture, dataset, dict(given.get("configuration") or {}), settings)


def checked(settings: Settings, config: dict[str, Any]) -> dict[str, Any]:
    """A configuration document with its options checked against the architecture's adapter (422 naming each bad field)."""
    adapter = get_adapter(config["architecture"], settings.adapters)
    validate_configuration(adapter, config.get("configuration") or {}, "configuration")
    return document(config["architecture"], config.get("dataset"), dict(config.get("configuration") or {}),
                    ExecutionSettings.model_validate(config.get("execution") or {}).model_dump(exclude_none=True))


def save(settings: Settings, project: str, name: str, description: str, config: dict[str, Any],
         source_execution: str | None = None, replace: bool = False) -> Blueprint:
    """Save ``config`` as blueprint ``name`` of ``project``; 409 when the name is taken, unless ``replace``."""
    if name in BUILT_IN:
        raise ConfigError(f"{name} is a built-in blueprint", {"name": f"a name other than {', '.join(BUILT_IN)}"})
    fields = {**checked(settings, config), "description": description, "source_execution": source_execution}
    with database.atomic():
        existing = Blueprint.get_or_none((Blueprint.project == project) & (Blueprint.name == name))
        saved = Blueprint.select().where(Blueprint.project == project).count()
        if existing is None and saved >= MAX_BLUEPRINTS:
            raise QuotaExceeded(f"project {project} has {saved} blueprints, its most: delete some first",
                                {"name": f"at most {MAX_BLUEPRINTS} saved blueprints a project"})
        if existing is not None and not replace:
            raise Conflict(f"project {project} already has a blueprint {name}", {"name": "a new name, or replace: true"})
        if existing is not None:
            existing.delete_instance()
        try:
            return Blueprint.create(project=project, name=name, **fields)
        except peewee.IntegrityError:  # saved by a racing request in between
            raise Conflict(f"project {project} already has a blueprint {name}", {"name": "a new name, or replace: true"}) from None


def get(name: str, project: str) -> Blueprint:
    found = Blueprint.get_or_none((Blueprint.project == project) & (Blueprint.name == name))
    if found is None:
        raise NotFound(f"project {project} has no blueprint {name}", {"blueprint": "the name of a saved blueprint, quick or full"})
    return found


def delete(name: str, project: str) -> Blueprint:
    """Delete saved blueprint ``name`` of ``project``; return what it held."""
    if name in BUILT_IN:
        raise ConfigError(f"{name} is built in and cannot be deleted", {"name": "a saved blueprint"})
    blueprint = get(name, project)
    blueprint.delete_instance()
    return blueprint


def full(settings: Settings, architecture: str) -> dict[str, Any]:
    """The ``full`` blueprint of ``architecture``: every option at its default, and each option described."""
    adapter = get_adapter(architecture, settings.adapters)
    schema = options(architecture, settings.adapters)
    described = [_option(name, spec, schema.get("$defs", {})) for name, spec in schema.get("properties", {}).items()]
    return {**document(architecture, None, adapter.validate_configuration({}), {}), "options": described}


def _option(name: str, spec: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One option of a JSON Schema as a row: type, default, range or choices, meaning."""
    kinds = [part for part in spec.get("anyOf", [spec]) if part.get("type") != "null"]
    kind = kinds[0] if kinds else spec
    if "$ref" in kind:
        kind = defs.get(kind["$ref"].rsplit("/", 1)[-1], kind)
    return {"name": name, "type": kind.get("type", "any"), "default": spec.get("default"),
            "minimum": kind.get("minimum", kind.get("exclusiveMinimum")), "maximum": kind.get("maximum", kind.get("exclusiveMaximum")),
            "choices": kind.get("enum"), "nullable": len(kinds) < len(spec.get("anyOf", [spec])),
            "description": spec.get("description", "")}


def for_training(name: str, model: Model) -> dict[str, Any]:
    """The document a training of ``model`` takes from blueprint ``name`` (its project's, or built in)."""
    if name in (QUICK, FULL):
        return document(model.architecture, None, {}, {})
    blueprint = get(name, model.project)
    if blueprint.architecture != model.architecture:
        raise ConfigError(f"blueprint {name} is for {blueprint.architecture}, model {model.id} is a {model.architecture}",
                          {"blueprint": f"a blueprint of architecture {model.architecture}"})
    return document(blueprint.architecture, blueprint.dataset, blueprint.configuration, blueprint.execution)


def built_in(name: str, project: str, settings: Settings, architecture: str | None, listed: bool = False) -> dict[str, Any]:
    """Built-in blueprint ``name`` as a project sees it; ``full`` needs an architecture (unless ``listed``), ``quick`` takes one."""
    if name == FULL and architecture is None and not listed:
        raise ConfigError("the full blueprint describes one architecture's options", {"architecture": "an architecture name"})
    if architecture is None:
        body = document(None, None, {}, {})
    elif name == FULL:
        body = full(settings, architecture)
    else:
        get_adapter(architecture, settings.adapters)  # an unknown one is named
        body = document(architecture, None, {}, {})
    return {"name": name, "project": project, "description": BUILT_IN[name], "built_in": True, "source_execution": None,
            "created_at": None, **body}


def with_blueprint(name: str, model: Model, dataset: str | None, configuration: dict[str, Any] | None,
                   execution: ExecutionSettings | None) -> tuple[str | None, dict[str, Any], ExecutionSettings]:
    """A training request's data set, options and settings over those of blueprint ``name``."""
    taken = for_training(name, model)
    given = execution.model_dump(exclude_none=True) if execution is not None else {}
    return (dataset or taken["dataset"], {**taken["configuration"], **(configuration or {})},
            ExecutionSettings.model_validate({**taken["execution"], **given}))
