"""Evaluations and predictions: executions that run a trained model on its service.

Each is an execution like a training (same queue, settings, attempts, statuses and logs) that
records its model and calls ``evaluate_model`` or ``predict_model``; neither changes the model's
status (see models.follow). Only a trained model runs: a Conflict names its status otherwise.

What they read is checked here, before anything is queued: an evaluation's data set exactly as a
training's (inside the data roots, read by the adapter's own checker within the API's budget)
and against the model's labels; a prediction's files inside the data roots (relative names, no
way out through ``..`` or links), its inline images decoded only as far as their header, with
their size and pixel count capped, and its texts bounded.
"""
from __future__ import annotations

import base64
import binascii
import io
import warnings
from pathlib import Path
from typing import Any

import redis
from PIL import Image

from trainfaas.adapters.base import ModelAdapter
from trainfaas.adapters.catalog import get_adapter
from trainfaas.adapters.confine import shown
from trainfaas.services.control.configuration import validate_configuration
from trainfaas.services.control.datasets import check_dataset, resolve_dataset
from trainfaas.services.control.executions import ExecutionSettings, submit
from trainfaas.services.control.services import ensure_service
from trainfaas.services.core.errors import ConfigError, Conflict
from trainfaas.services.core.inputs import (
    MAX_FILE_BYTES,
    MAX_FILES_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_INLINE_CHARS,
    MAX_INLINE_IMAGE_CHARS,
    MAX_INPUTS,
    MAX_TEXT_CHARS,
    MAX_TOP_K,
)
from trainfaas.services.core.protocol import EVALUATE_MODEL, PREDICT_MODEL
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import ModelStatus
from trainfaas.services.store.records import Execution, Model

SUBSETS: tuple[str, ...] = ("train", "validation")
NAME_LENGTH = 200  # an execution's name, as the database keeps it
TEXT_TASKS: frozenset[str] = frozenset({"text-classification", "token-classification"})


def trained(model: Model, what: str) -> None:
    """Conflict, naming the model's status, unless it is trained and holds saved weights."""
    if model.status != ModelStatus.TRAINED or not model.artifact_path:
        raise Conflict(f"model {model.id} is {model.status}: only a trained model can be {what}; train it first",
                       {"status": str(model.status)})


def _configuration(settings: Settings, model: Model) -> dict[str, Any]:
    adapter = get_adapter(model.architecture, settings.adapters)
    return validate_configuration(adapter, dict(model.configuration or {}), "configuration")


def submit_evaluation(settings: Settings, connection: redis.Redis, model: Model, dataset: str, subset: str,
                      overrides: ExecutionSettings | None) -> Execution:
    """Check and queue an evaluation of trained ``model`` on the ``subset`` of ``dataset``."""
    trained(model, "evaluated")
    if subset not in SUBSETS:
        raise ConfigError(f"unknown subset {subset!r}", {"subset": f"one of: {', '.join(SUBSETS)}"})
    adapter = get_adapter(model.architecture, settings.adapters)
    if adapter.dataset_format is None or adapter.evaluate is ModelAdapter.evaluate:
        raise ConfigError(f"the adapter of {model.architecture} cannot evaluate a model",
                          {"model_id": "a model of an architecture whose adapter reads a data set and implements evaluate()"})
    configuration = _configuration(settings, model)
    path = resolve_dataset(settings, dataset)
    labels = check_dataset(settings, adapter, path, configuration)  # with the model's label subset, if it chose one
    unknown = [label for label in labels if label not in model.labels]
    if unknown:
        raise ConfigError(f"data set {dataset} has labels the model does not know: {shown(unknown)}",
                          {"dataset": f"a {adapter.dataset_format} data set labelled among the model's labels: {shown(model.labels)}"})
    service = ensure_service(settings, model.architecture)
    input = {"model_id": model.id, "model_path": model.artifact_path, "configuration": configuration, "dataset": str(path),
             "subset": subset}
    return submit(settings, connection, service, EVALUATE_MODEL, f"evaluate {model.name}"[:NAME_LENGTH], input, model, overrides, model.project)


def submit_prediction(settings: Settings, connection: redis.Redis, model: Model, inputs: list[dict[str, Any]],
                      top_k: int, overrides: ExecutionSettings | None) -> Execution:
    """Check and queue a prediction of trained ``model`` on ``inputs`` (each ``{"file"}``, ``{"image"}`` or ``{"text"}``)."""
    trained(model, "run")
    if get_adapter(model.architecture, settings.adapters).predict is ModelAdapter.predict:
        raise ConfigError(f"the adapter of {model.architecture} cannot predict",
                          {"model_id": "a model of an architecture whose adapter implements predict()"})
    text = model.task in TEXT_TASKS
    checked = check_inputs(settings, inputs, text)
    if not 1 <= top_k <= MAX_TOP_K:
        raise ConfigError(f"top_k {top_k} is out of range", {"top_k": f"from 1 to {MAX_TOP_K}"})
    service = ensure_service(settings, model.architecture)
    input = {"model_id": model.id, "model_path": model.artifact_path, "configuration": _configuration(settings, model),
             "inputs": checked, "top_k": top_k}
    return submit(settings, connection, service, PREDICT_MODEL, f"predict {model.name}"[:NAME_LENGTH], input, model, overrides, model.project)


def check_inputs(settings: Settings, inputs: list[dict[str, Any]], text: bool) -> list[dict[str, Any]]:
    """The inputs as the work process reads them: files resolved inside the data roots, inline
    payloads checked. ConfigError naming the input's field and the limit otherwise."""
    if not 1 <= len(inputs) <= MAX_INPUTS:
        raise ConfigError(f"{len(inputs)} inputs given", {"inputs": f"from 1 to {MAX_INPUTS} inputs"})
    inline = files = 0
    checked = []
    for index, item in enumerate(inputs):
        field = f"inputs.{index}"
        kinds = [key for key in ("file", "image", "text") if item.get(key) is not None]
        if len(kinds) != 1:
            raise ConfigError("each input is one of file, image or text", {field: "exactly one of file, image, text"})
        kind = kinds[0]
        value = item[kind]
        if kind == "file":
            path, size = input_file(settings, value, f"{field}.file")
            files += size
            if files > MAX_FILES_BYTES:
                raise ConfigError("the input files are too large together", {f"{field}.file": f"at most {MAX_FILES_BYTES} bytes of files in all"})
            checked.append({"file": str(path), "name": value})
            continue
        if kind == "text" and not text:
            raise ConfigError("this model reads images, not text", {f"{field}.text": "give an image or a file"})
        if kind == "image" and text:
            raise ConfigError("this model reads text, not images", {f"{field}.image": "give a text or a file"})
        inline += len(value)
        if inline > MAX_INLINE_CHARS:
            raise ConfigError("the inline inputs are too large together", {f"{field}.{kind}": f"at most {MAX_INLINE_CHARS} characters inline in all"})
        if kind == "image":
            inline_image(value, f"{field}.image")
        elif len(value) > MAX_TEXT_CHARS:
            raise ConfigError(f"a text of {len(value)} characters", {f"{field}.text": f"at most {MAX_TEXT_CHARS} characters"})
        checked.append({kind: value, "name": f"input {index}"})
    return checked


def input_file(settings: Settings, name: Any, field: str) -> tuple[Path, int]:
    """The resolved path and size of ``name``, a regular file relative to the first data root that
    stays inside the data roots once links are resolved; ConfigError naming ``field`` otherwise."""
    roots = settings.dataset_roots
    allowed = {field: f"a file's path relative to {roots[0]}, inside {' or '.join(map(str, roots))} (TRAINFAAS_DATA_ROOTS)"}
    if not isinstance(name, str) or not name or "\x00" in name or len(name) > 4096:
        raise ConfigError("an input file is named by a relative path", allowed)
    if Path(name).is_absolute() or name.startswith("~"):
        raise ConfigError(f"input file {name[:200]} is not a relative path", allowed)
    try:
        path = (roots[0] / name).resolve()
    except (OSError, RuntimeError):
        raise ConfigError(f"input file {name[:200]} cannot be resolved", allowed) from None
    if not any(path.is_relative_to(root.resolve()) for root in roots):
        raise ConfigError(f"input file {name[:200]} lies outside the data roots", allowed)
    if not path.is_file():
        raise ConfigError(f"input file {name[:200]} is not a file", allowed)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"input file {name[:200]} has {size} bytes", {field: f"a file of at most {MAX_FILE_BYTES} bytes"})
    return path, size


def inline_image(value: str, field: str) -> None:
    """Refuse an inline image that is too long, not base64, or not an image of a readable size:
    only its header is decoded here (the pixels are, in the work process, under the same cap)."""
    if len(value) > MAX_INLINE_IMAGE_CHARS:
        raise ConfigError(f"an inline image of {len(value)} base64 characters",
                          {field: f"at most {MAX_INLINE_IMAGE_CHARS} base64 characters; put larger images in a data root and give their file"})
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("an inline image is not base64", {field: "a base64-encoded PNG, JPEG, BMP or similar image"}) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Exception:  # noqa: BLE001 - whatever PIL (or a library that patched Image.open: ultralytics) raises on bytes it cannot read
        raise ConfigError("an inline image is not an image PIL reads", {field: "a base64-encoded PNG, JPEG, BMP or similar image"}) from None
    if width * height > MAX_IMAGE_PIXELS:
        raise ConfigError(f"an inline image of {width}x{height} pixels", {field: f"at most {MAX_IMAGE_PIXELS} pixels"})
