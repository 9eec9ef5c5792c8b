"""Imported models: weights a user already has become a ``pre-trained`` model that trainings fine-tune from.

The weights come as an uploaded file (the API has streamed it to a file of its own, bounded by
``max_import_bytes``) or as a path inside the data roots (a file, or a folder for adapters whose
models are folders). The architecture's adapter checks that they fit (``import_weights``: keys and
shapes, the number of classes of the head against the labels) and writes them, as its ``save``
writes a trained model, into ``home/models/<model id>``; only then is the model recorded. A refused
import leaves nothing behind: no row, no folder.

A model archive (``GET /models/<id>/artifact``'s tar.gz, told by its gzip header) is imported
unchanged: :func:`archives.read_archive` checks and extracts it into a staging folder, and the
adapter of the manifest's architecture takes the saved model back (``import_saved``). The new model
keeps the manifest's architecture, labels, configuration, metrics and status (a trained model comes
back trained, so that it predicts and evaluates; any other, pre-trained), and ``imported_from`` says
which archive, model and training it came from.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trainfaas.adapters.catalog import get_adapter
from trainfaas.services.control import archives
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.settings import Settings
from trainfaas.services.core.statuses import ModelStatus
from trainfaas.services.store.database import database
from trainfaas.services.store.records import DEFAULT_PROJECT, Model, new_id


def models_dir(settings: Settings) -> Path:
    """Where imported models keep their weights, one folder per model."""
    return settings.home / "models"


def imported_folder(settings: Settings, model_id: str) -> Path:
    return models_dir(settings) / model_id


def resolve_weights(settings: Settings, path: str) -> Path:
    """The weights file or folder ``path`` names, symlinks resolved; ConfigError naming ``path``
    unless it lies inside a data root and exists. A relative path is taken from the first data root."""
    roots = settings.dataset_roots
    if "\x00" in path:
        raise ConfigError("the weights path holds a NUL character", {"path": "a path without NUL characters"})
    given = Path(path)
    try:
        resolved = (given if given.is_absolute() else roots[0] / given).resolve()
    except (OSError, ValueError):  # a name too long for the file system, say
        resolved = roots[0]
    inside = resolved != roots[0] and any(resolved.is_relative_to(root) for root in roots)
    try:
        exists = inside and (resolved.is_file() or resolved.is_dir())
    except (OSError, ValueError):
        exists = False
    if not inside:
        raise ConfigError("the weights path lies outside the data roots",
                          {"path": f"a file or folder inside {' or '.join(map(str, roots))} (TRAINFAAS_DATA_ROOTS)"})
    if not exists:
        raise ConfigError("the weights path names no file or folder", {"path": "an existing weights file or model folder inside the data roots"})
    return resolved


def import_model(settings: Settings, source: Path, source_name: str, architecture: str, name: str | None,
                 labels: list[str] | None, project: str = DEFAULT_PROJECT) -> Model:
    """Check ``source`` against ``architecture`` and record it as a pre-trained model of ``project``
    named ``name`` (default: the file's name without its suffix)."""
    adapter = get_adapter(architecture, settings.adapters)
    model_id = new_id()
    folder = imported_folder(settings, model_id)
    staging = models_dir(settings) / f".importing-{model_id}"
    staging.mkdir(parents=True, exist_ok=False)
    try:
        chosen = adapter.import_weights(architecture, source, staging, labels)
        staging.rename(folder)
        with database.atomic():
            return Model.create(id=model_id, name=(name or Path(source_name).stem or "imported")[:200], architecture=architecture,
                                task=adapter.task_of(architecture), labels=chosen, configuration={}, project=project,
                                status=ModelStatus.PRE_TRAINED, artifact_path=str(folder), imported_from=source_name[:4096])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _provenance(source_name: str, manifest: dict[str, Any]) -> str:
    """Where an archive's model came from: the archive, the model it was downloaded from and its training."""
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    parts = [f"archive {source_name}", f"model {str(manifest.get('model_id'))[:32]}"]
    if source.get("execution"):
        step = f" step {source['step']}" if isinstance(source.get("step"), int) else ""
        parts.append(f"execution {str(source['execution'])[:32]}{step}")
    if source.get("imported_from"):
        parts.append(f"imported from {str(source['imported_from'])[:1000]}")
    return ", ".join(parts)


def _status(manifest: dict[str, Any]) -> ModelStatus:
    """A trained model comes back trained (it predicts and evaluates as before); any other, pre-trained."""
    return ModelStatus.TRAINED if manifest.get("status") == ModelStatus.TRAINED.value else ModelStatus.PRE_TRAINED


def import_archive(settings: Settings, source: Path, source_name: str, architecture: str | None, name: str | None,
                   project: str = DEFAULT_PROJECT) -> Model:
    """Check the model archive ``source`` and record its model in ``project`` (trained if it was, else pre-trained); the
    architecture, when given, must be the manifest's. ConfigError naming ``archive`` (or the field) otherwise."""
    model_id = new_id()
    folder = imported_folder(settings, model_id)
    staging = models_dir(settings) / f".importing-{model_id}"
    unpacked = models_dir(settings) / f".unpacking-{model_id}"
    try:
        manifest = archives.read_archive(source, unpacked, settings.max_import_bytes)
        if architecture is not None and architecture != manifest["architecture"]:
            raise ConfigError(f"the archive holds a {manifest['architecture'][:100]} model, not a {architecture}",
                              {"architecture": f"the archive's own ({manifest['architecture'][:100]}), or leave it out"})
        adapter = get_adapter(manifest["architecture"], settings.adapters)
        try:
            adapter.validate_configuration(manifest["configuration"])
        except ValidationError as error:
            raise ConfigError(f"the archive's configuration is not one {manifest['architecture'][:100]} takes: {str(error)[:300]}",
                              {"archive": "a manifest whose configuration its architecture's adapter takes"}) from None
        staging.mkdir(parents=True)
        try:
            labels = adapter.import_saved(manifest["architecture"], unpacked / archives.ROOT, staging, [str(x) for x in manifest["labels"]])
        except ConfigError as error:
            raise ConfigError(str(error), {("archive" if key == "weights" else key): value for key, value in error.fields.items()}) from None
        staging.rename(folder)
        with database.atomic():
            return Model.create(id=model_id, name=(name or str(manifest.get("name") or Path(source_name).stem))[:200],
                                architecture=manifest["architecture"], task=adapter.task_of(manifest["architecture"]), labels=labels,
                                configuration=dict(manifest["configuration"]), project=project, status=_status(manifest),
                                artifact_path=str(folder), metrics=dict(manifest.get("metrics") or {}), imported_from=_provenance(source_name, manifest)[:4096])
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
