"""A model as one archive to download: its folder's regular files and a ``manifest.json``.

The archive (tar.gz) holds the files of the model's folder (``artifact_path``) under ``model/``, and
``manifest.json``: the model's architecture, task, labels, configuration, metrics, the training that
saved it (or what it was imported from), the sha256 of each file and one ``content_sha256`` over
them all (the sha256 of the sorted ``<sha256>  <path>`` lines, as ``sha256sum`` prints them).

Only regular files are taken, each opened without following a link (``O_NOFOLLOW``), from folders
walked without following links: a symlink that training code planted in its output folder (to
``/etc/passwd``, to another model) is left out and named in the manifest's ``skipped``, so the
archive never holds a byte from outside the model's folder.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import IO, Any

from trainfaas.services.core.errors import Conflict
from trainfaas.services.store.records import Artifact, Model

CHUNK = 1024 * 1024
ROOT = "model"


def _open_regular(folder_fd: int, name: str) -> int | None:
    """A descriptor of regular file ``name`` in the folder, opened without following links; None for anything else."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder_fd)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _walk(folder: Path) -> tuple[list[str], list[str]]:
    """The relative paths of the regular files under ``folder`` (sorted) and of what was skipped (links, devices)."""
    files, skipped = [], []
    for here, dirs, names in os.walk(folder, followlinks=False):
        base = Path(here)
        for name in list(dirs):
            if (base / name).is_symlink():
                skipped.append(str((base / name).relative_to(folder)))
                dirs.remove(name)
        for name in names:
            path = base / name
            relative = str(path.relative_to(folder))
            (files if path.is_file() and not path.is_symlink() else skipped).append(relative)
    return sorted(files), sorted(skipped)


def _source(model: Model) -> dict[str, Any]:
    artifact = Artifact.select().where(Artifact.path == model.artifact_path).order_by(Artifact.id.desc()).first()
    return {"execution": artifact.execution_id if artifact else None, "attempt": artifact.attempt if artifact else None,
            "imported_from": model.imported_from}


def write_archive(model: Model, target: IO[bytes]) -> dict[str, Any]:
    """Write ``model``'s archive into ``target`` (a binary file); return its manifest. Conflict (409)
    when the model holds no weights."""
    if not model.artifact_path or not Path(model.artifact_path).is_dir():
        raise Conflict(f"model {model.id} is {model.status} and holds no saved model to download",
                       {"status": f"{model.status}: a trained or pre-trained model"})
    folder = Path(model.artifact_path)
    files, skipped = _walk(folder)
    digests: dict[str, str] = {}
    with tarfile.open(fileobj=target, mode="w:gz") as tar:
        for relative in files:
            parent_fd = os.open(folder / Path(relative).parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                fd = _open_regular(parent_fd, Path(relative).name)
            finally:
                os.close(parent_fd)
            if fd is None:
                skipped.append(relative)
                continue
            digests[relative] = _add(tar, fd, f"{ROOT}/{relative}")
        manifest = _manifest(model, digests, sorted(skipped))
        data = json.dumps(manifest, indent=2).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return manifest


class _Hashing:
    """A file read through while it is archived, hashed as it goes: the bytes hashed are the bytes archived."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.digest = handle, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


def _add(tar: tarfile.TarFile, fd: int, name: str) -> str:
    """Add the open regular file ``fd`` as ``name``; return its sha256."""
    with os.fdopen(fd, "rb") as handle:
        info = tarfile.TarInfo(name)
        info.size, info.mode = os.fstat(handle.fileno()).st_size, 0o644
        reader = _Hashing(handle)
        tar.addfile(info, reader)  # type: ignore[arg-type]
    return reader.digest.hexdigest()


def _manifest(model: Model, digests: dict[str, str], skipped: list[str]) -> dict[str, Any]:
    lines = "".join(f"{digest}  {ROOT}/{path}\n" for path, digest in sorted(digests.items()))
    return {
        "format": 1, "model_id": model.id, "name": model.name, "architecture": model.architecture, "task": model.task,
        "labels": list(model.labels), "configuration": dict(model.configuration), "metrics": dict(model.metrics),
        "status": str(model.status), "source": _source(model),
        "files": [{"path": f"{ROOT}/{path}", "sha256": digest} for path, digest in sorted(digests.items())],
        "content_sha256": hashlib.sha256(lines.encode()).hexdigest(), "skipped": skipped,
    }
