"""Models in and out: import weights a user already has, download a model as an archive.

An import takes the weights as a multipart/form-data upload (the file field ``weights``, at most
``max_import_bytes``, streamed to disk) or, as JSON, a ``path`` inside the data roots (a file, or a
model folder), or a model archive as a download writes it (imported unchanged, see
trainfaas.services.control.imports). A download streams a tar.gz of the model's folder with its ``manifest.json``
(trainfaas.services.control.archives)."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Response
from pydantic import Field

from trainfaas.services.api import settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import ModelOut, Strict
from trainfaas.services.api.views import model_view
from trainfaas.services.control import archives, imports
from trainfaas.services.control import models as control
from trainfaas.services.control.tokens import Principal
from trainfaas.services.core.errors import ConfigError

bp = Blueprint("model_files", __name__, url_prefix="/api/v1/models")

UPLOAD_FIELD = "weights"
ARCHIVE_TYPE = "application/gzip"


class ModelImport(Strict):
    """An import: the architecture the weights are of, and where they are (``path``, or an upload)."""

    architecture: str | None = Field(None, min_length=1, max_length=100,
                                     description="Required for weights; for a model archive its manifest's (if given, it must match).")
    name: str | None = Field(None, min_length=1, max_length=200, description="Default: the weights file's name without its suffix.")
    project: str | None = Field(None, max_length=100, description="Default: the token's project, or default.")
    labels: list[str] | None = Field(None, max_length=100000,
                                     description="One per class of the weights' head, in order; default: those the weights name, or class_0...")
    path: str | None = Field(None, min_length=1, max_length=4096,
                             description="A weights file or model folder inside the data roots; leave out when uploading the file.")


@endpoint(bp, "POST", "/import", body=ModelImport, response=ModelOut, status=201, access="write", upload=UPLOAD_FIELD,
          links={"id": "/models/{model_id}"})
def import_(body: ModelImport, upload: Any, principal: Principal) -> dict[str, Any]:
    """Import weights as a pre-trained model (an archive: as the model was, trained or pre-trained), checked
    against the architecture layer by layer. Send
    them as the multipart file field ``weights`` (a torch state dict, an ultralytics checkpoint, or a model
    archive as ``GET /models/{id}/artifact`` downloads it), or name a ``path`` inside the data roots; 422
    names the first layer that does not fit, or ``archive`` for an archive changed since its download,
    with a member outside ``model/``, a link, or more than ``max_import_bytes``."""
    project = principal.project_for_new(body.project)
    if (upload is None) == (body.path is None):
        raise ConfigError("give the weights either as the upload weights or as a path, not both nor neither",
                          {"path": "a file or folder inside the data roots, or upload the file as the form field weights"})
    if body.labels is not None and (not all(label.strip() for label in body.labels) or len(set(body.labels)) != len(body.labels)):
        raise ConfigError("labels must be distinct and not empty", {"labels": "distinct, non-empty names"})
    if upload is None:
        source = imports.resolve_weights(settings(), str(body.path))
        return model_view(_import(body, source, str(body.path), project))
    name = Path(upload.filename or "weights.pt").name[:255]
    imports.models_dir(settings()).mkdir(parents=True, exist_ok=True)
    suffix = Path(name).suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", Path(name).suffix) else ".pt"
    handle, spooled = tempfile.mkstemp(prefix=".upload-", suffix=suffix, dir=imports.models_dir(settings()))
    try:
        with os.fdopen(handle, "wb") as target:
            shutil.copyfileobj(upload.stream, target, 1024 * 1024)
        return model_view(_import(body, Path(spooled), name, project))
    finally:
        os.unlink(spooled)


def _import(body: ModelImport, source: Path, source_name: str, project: str) -> Any:
    """A model archive (told by its gzip header) as it was downloaded, else weights of ``body.architecture``."""
    if archives.is_archive(source):
        if body.labels is not None:
            raise ConfigError("an archive's labels are its manifest's", {"labels": "leave it out for a model archive"})
        return imports.import_archive(settings(), source, source_name, body.architecture, body.name, project)
    if body.architecture is None:
        raise ConfigError("weights need their architecture", {"architecture": "the architecture the weights are of, e.g. resnet18"})
    return imports.import_model(settings(), source, source_name, body.architecture, body.name, body.labels, project)


@endpoint(bp, "GET", "/<model_id>/artifact", response=ModelOut, errors=(409,), media_type=ARCHIVE_TYPE)
def artifact(model_id: str, principal: Principal) -> Response:
    """Download the model's saved weights as a tar.gz: the files of its folder under model/ (symlinks
    left out) and manifest.json (architecture, task, labels, configuration, metrics, source training,
    sha256 of each file and of the whole content). 409 for a model without saved weights."""
    model = control.get_model(model_id, principal.reach)
    spooled = tempfile.TemporaryFile()
    try:
        archives.write_archive(model, spooled)
    except BaseException:
        spooled.close()
        raise
    size = spooled.tell()
    spooled.seek(0)

    def chunks() -> Iterator[bytes]:
        with spooled:
            yield from iter(lambda: spooled.read(archives.CHUNK), b"")

    filename = f"{model.name[:100]}-{model.id[:8]}.tar.gz".replace('"', "")
    return Response(chunks(), mimetype=ARCHIVE_TYPE, headers={"Content-Length": str(size),
                                                               "Content-Disposition": f'attachment; filename="{filename}"'})
