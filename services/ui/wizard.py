"""The training wizard: a task, an architecture from the catalog, a data set, then a quick start,
every option of the adapter, or JSON; the execution settings; a review; and the training."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import jsonify, redirect, request, url_for

from trainfaas.adapters.catalog import catalog, get_adapter
from trainfaas.services.api import models as api_models
from trainfaas.services.api import settings
from trainfaas.services.api.architectures import index as api_architectures
from trainfaas.services.api.blueprints import execution_config
from trainfaas.services.api.schemas import ArchitectureQuery, ModelCreate, TrainRequest
from trainfaas.services.control import blueprints as control_blueprints
from trainfaas.services.control.configuration import validate_configuration
from trainfaas.services.control.executions import ExecutionSettings
from trainfaas.services.core.errors import ConfigError, TrainfaasError
from trainfaas.services.ui.sessions import Session
from trainfaas.services.ui.web import bp, failure_fields, page, render, shown

MODES = ("quick", "full", "json")
EXECUTION_FIELDS = ("timeout_s", "drain_time_s", "max_attempts", "on_reset")
MAX_LISTED_DATASETS = 200


def _catalog(task: str) -> list[dict[str, Any]]:
    """The architectures of ``task`` with their size figures (measured once per adapter version, then cached)."""
    return list(api_architectures(query=ArchitectureQuery(task=task, limit=500), principal=None)["items"])


def folders_of_first_root() -> list[str]:
    """Folders in the first data root, offered as data set names (at most a few hundred)."""
    root = settings().dataset_roots[0]
    try:
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    return found[:MAX_LISTED_DATASETS]


def _cloned(session: Session, execution_id: str) -> dict[str, Any]:
    """The wizard's fields filled from what execution ``execution_id`` ran with."""
    config = execution_config(execution_id=execution_id, principal=session.principal)
    return {"architecture": config["architecture"], "dataset": config.get("dataset") or "", "mode": "json",
            "configuration": json.dumps(config.get("configuration") or {}, indent=2),
            **{key: "" if config["execution"].get(key) is None else str(config["execution"][key]) for key in EXECUTION_FIELDS}}


@bp.get("/train")
@page("write")
def train(session: Session) -> Any:
    form: dict[str, Any] = {key: request.args.get(key, "") for key in ("task", "architecture", "dataset", "mode", "name")}
    if request.args.get("clone"):
        form.update(_cloned(session, request.args["clone"]))
    return _wizard(form, "", {}, 200)


def _wizard(form: dict[str, Any], message: str, fields: dict[str, str], status: int) -> Any:
    entries = catalog(settings().adapters)  # names and tasks only: the figures are measured for the chosen task
    if form.get("architecture") in entries:
        form["task"] = entries[form["architecture"]].task
    tasks = sorted({entry.task for entry in entries.values()})
    rows = _catalog(form["task"]) if form.get("task") in tasks else []
    chosen = next((row for row in rows if row["architecture"] == form.get("architecture")), None)
    options = control_blueprints.full(settings(), chosen["architecture"])["options"] if chosen else []
    return render("train.html", form=form, tasks=tasks, catalog=rows,
                  chosen=chosen, options=options, datasets=folders_of_first_root(), modes=MODES, message=message, fields=fields,
                  execution_fields=EXECUTION_FIELDS), status


def _option_value(spec: dict[str, Any], raw: str) -> Any:
    """An option typed in the form, as its type: ConfigError naming the option when it is not one."""
    kind, name = spec["type"], f"configuration.{spec['name']}"
    if raw == "null" and spec["nullable"]:
        return None
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean":
            return {"true": True, "false": False}[raw]
        if kind in ("array", "object"):
            return json.loads(raw)
    except (ValueError, KeyError):
        raise ConfigError(f"{spec['name']} is not a {kind}", {name: f"a {kind}"}) from None
    return raw


def configuration_of(form: dict[str, Any], options: list[dict[str, Any]]) -> dict[str, Any]:
    """The options the form sets: none for a quick start, the changed fields, or the JSON object."""
    mode = form.get("mode") or "quick"
    if mode == "json":
        try:
            given = json.loads(form.get("configuration") or "{}")
        except ValueError as exc:
            raise ConfigError(f"the configuration is not JSON: {exc}", {"configuration": "a JSON object"}) from None
        if not isinstance(given, dict):
            raise ConfigError("the configuration must be a JSON object", {"configuration": "a JSON object"})
        return given
    if mode == "full":
        chosen = {}
        for spec in options:
            raw = str(form.get(f"opt.{spec['name']}", "")).strip()
            if raw != "" and raw != shown(spec["default"]):
                chosen[spec["name"]] = _option_value(spec, raw)
        return chosen
    return {}


def _request_of(form: dict[str, Any]) -> tuple[dict[str, Any], ModelCreate, TrainRequest]:
    """The model and training requests the form describes, checked as the API checks them."""
    architecture = form.get("architecture", "")
    get_adapter(architecture, settings().adapters)  # an unknown one is named
    options = control_blueprints.full(settings(), architecture)["options"]
    configuration = configuration_of(form, options)
    execution = ExecutionSettings.model_validate({key: form[key] for key in EXECUTION_FIELDS if str(form.get(key, "")).strip()})
    dataset = str(form.get("dataset", "")).strip() or None
    name = str(form.get("name", "")).strip() or f"{architecture}-{Path(dataset).name if dataset else 'model'}"
    model = ModelCreate(name=name, architecture=architecture, configuration=configuration or None)
    training = TrainRequest(dataset=dataset, execution=execution,
                            blueprint="quick" if form.get("mode") in ("quick", "", None) else None)
    return configuration, model, training


@bp.post("/train")
@page("write", changes=True)
def train_submit(session: Session) -> Any:
    form = {key: value for key, value in request.form.items() if key != "csrf"}
    try:
        configuration, model, training = _request_of(form)
        if form.get("step") != "submit":
            return render("review.html", form=form, configuration=configuration, model=model, training=training)
        created = api_models.create(body=model, principal=session.principal)
        try:
            execution = api_models.train(model_id=created["id"], body=training, principal=session.principal)
        except TrainfaasError:
            api_models.delete(model_id=created["id"], principal=session.principal)  # leave no trace of a refused training
            raise
    except Exception as exc:  # noqa: BLE001 - failure_fields re-raises anything that is not the caller's mistake
        message, fields = failure_fields(exc)
        return _wizard(form, message, fields, 422)
    return redirect(url_for("ui.executions", created=execution["id"]))


@bp.post("/train/check")
@page("write", changes=True)
def train_check(session: Session) -> Any:
    """The adapter's own verdict on options typed so far, and the settings': ``{"ok", "message", "fields"}``."""
    form = {key: value for key, value in request.form.items() if key != "csrf"}
    messages, fields = [], {}
    for check in (_check_options, _check_settings):
        try:
            check(form)
        except Exception as exc:  # noqa: BLE001 - failure_fields re-raises anything that is not the caller's mistake
            message, named = failure_fields(exc)
            messages.append(message)
            fields.update(named)
    return jsonify({"ok": not messages, "message": " ".join(messages), "fields": fields})


def _check_options(form: dict[str, Any]) -> None:
    adapter = get_adapter(form.get("architecture", ""), settings().adapters)
    options = control_blueprints.full(settings(), form["architecture"])["options"]
    validate_configuration(adapter, configuration_of(form, options), "configuration")


def _check_settings(form: dict[str, Any]) -> None:
    ExecutionSettings.model_validate({key: form[key] for key in EXECUTION_FIELDS if str(form.get(key, "")).strip()})


@bp.post("/train/edit")
@page("write", changes=True)
def train_edit(session: Session) -> Any:
    """Back from the review to the wizard, with what was typed."""
    return _wizard({key: value for key, value in request.form.items() if key != "csrf"}, "", {}, 200)
