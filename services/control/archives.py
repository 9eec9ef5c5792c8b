"""A model as one archive to download: its folder's regular files and a ``manifest.json``.

The archive (tar.gz) holds the files of the model's folder (``artifact_path``) under ``model/``, and
``manifest.json``: the model's architecture, task, labels, configuration, metrics, the training that
saved it (or what it was imported from), the sha256 of each file and one ``content_sha256`` over
them all (the sha256 of the sorted ``<sha256>  <path>`` lines, as ``sha256sum`` prints them).

Only regular files are taken, each opened without following a link (``O_NOFOLLOW``), from folders
walked without following links: a symlink that training code planted in its output folder (to
``/etc/passwd``, to another model) is left out and named in the manifest's ``skipped``, so the
archive never holds a byte from outside the model's folder.

:func:`read_archive` takes such an archive back (an import): it reads the tar.gz as a stream, member
by member, and writes only regular files named ``model/<relative path>`` (no absolute path, no
``..``, no link, device or duplicate) and ``manifest.json``, bounded in count and in bytes, each
opened with ``O_EXCL | O_NOFOLLOW`` under a fresh folder; then every file's sha256 and the
``content_sha256`` must be the manifest's. Nothing in it is unpickled: the model's adapter reads the
weights (``import_saved``) as it reads imported weights. Every refusal is a ConfigError naming ``archive``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any

from trainfaas.services.core.errors import ConfigError, Conflict
from trainfaas.services.store.records import Artifact, Model

CHUNK = 1024 * 1024
ROOT = "model"
MANIFEST = "manifest.json"
MAX_MEMBERS = 10_000
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
ARCHIVE = "a model archive as GET /models/{id}/artifact downloads it (tar.gz: model/ and manifest.json), unchanged"


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
    return {"execution": artifact.execution_id if artifact else model.source_execution, "attempt": artifact.attempt if artifact else None,
            "step": model.source_step, "imported_from": model.imported_from}


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


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a gzip file (a model archive, or nothing importable): weights files are not."""
    try:
        if not path.is_file():  # checked first: opening a FIFO would block
            return False
        with open(path, "rb") as handle:
            return handle.read(2) == GZIP_MAGIC
    except OSError:
        return False


def _refuse(message: str) -> ConfigError:
    return ConfigError(f"the archive is refused: {message}", {"archive": ARCHIVE})


def _member_path(member: tarfile.TarInfo) -> str | None:
    """The relative path under ``model/`` a member is written to, None for the manifest (and for the
    folder entries tar writes); ConfigError for a name or a kind of member that could escape."""
    name = member.name.rstrip("/") if member.isdir() else member.name
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or "\x00" in name or any(part in ("", ".", "..") for part in parts):
        raise _refuse(f"member {name[:200]!r} is not a plain relative path")
    if not (member.isfile() or member.isdir()):
        raise _refuse(f"member {name[:200]!r} is a link or a special file")
    if name == MANIFEST and member.isfile():
        return None
    if parts[0] != ROOT or (member.isfile() and len(parts) < 2):
        raise _refuse(f"member {name[:200]!r} lies outside model/ and is not manifest.json")
    return "/".join(parts[1:])


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> str:
    """Write the member's bytes into the new file ``target`` (never an existing one, never through a link); return their sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    assert source is not None, member.name
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        for data in iter(lambda: source.read(CHUNK), b""):
            digest.update(data)
            handle.write(data)
    return digest.hexdigest()


def _members(tar: tarfile.TarFile, folder: Path, max_bytes: int) -> tuple[dict[str, str], bytes]:
    """Extract the model's files into ``folder``; return their sha256 by relative path and the manifest's bytes."""
    digests: dict[str, str] = {}
    manifest: bytes | None = None
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > MAX_MEMBERS:
            raise _refuse(f"it holds more than {MAX_MEMBERS} members")
        relative = _member_path(member)
        if member.isdir():
            continue
        total += member.size
        if total > max_bytes:
            raise _refuse(f"its files hold more than {max_bytes} bytes (TRAINFAAS_MAX_IMPORT_BYTES)")
        if relative is None:
            if manifest is not None or member.size > MAX_MANIFEST_BYTES:
                raise _refuse("it holds two manifests, or one larger than 16 MiB")
            manifest = tar.extractfile(member).read()  # type: ignore[union-attr]
            continue
        if relative in digests:
            raise _refuse(f"member {member.name[:200]!r} appears twice")
        digests[relative] = _extract(tar, member, folder / ROOT / relative)
    if manifest is None:
        raise _refuse("it holds no manifest.json")
    return digests, manifest


def _checked_manifest(data: bytes, digests: dict[str, str]) -> dict[str, Any]:
    """The manifest, refused unless it lists exactly the files found, with their sha256 and content_sha256."""
    try:
        manifest = json.loads(data)
        listed = {str(entry["path"]): str(entry["sha256"]) for entry in manifest["files"]}
        content = str(manifest["content_sha256"])
    except (ValueError, KeyError, TypeError):
        raise _refuse("manifest.json is not a model manifest (files, content_sha256)") from None
    found = {f"{ROOT}/{path}": digest for path, digest in digests.items()}
    if listed != found:
        raise _refuse("its files or their sha256 are not those its manifest lists (changed since it was downloaded?)")
    lines = "".join(f"{digest}  {path}\n" for path, digest in sorted(found.items()))
    if hashlib.sha256(lines.encode()).hexdigest() != content:
        raise _refuse("its content_sha256 is not the manifest's")
    for key, kind in (("architecture", str), ("labels", list), ("configuration", dict)):
        if not isinstance(manifest.get(key), kind):
            raise _refuse(f"its manifest's {key} is not a {kind.__name__}")
    return dict(manifest)


def read_archive(source: Path, folder: Path, max_bytes: int) -> dict[str, Any]:
    """Extract the model archive ``source`` into the new folder ``folder`` (its ``model/`` files, as ``folder/model/...``) and
    return its manifest, checked against them. ConfigError naming ``archive`` for anything else; the
    caller removes ``folder`` then."""
    folder.mkdir(parents=True, exist_ok=False)
    try:
        with tarfile.open(source, mode="r|gz") as tar:
            digests, data = _members(tar, folder, max_bytes)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise _refuse(f"it is not a readable tar.gz ({type(error).__name__})") from None
    return _checked_manifest(data, digests)
