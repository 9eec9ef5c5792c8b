"""Backups of a home, taken while the stack runs, and their restore into a new home.

A backup is one tar.gz file, mode 0600 (it holds the admin token and the instance secret):

- ``manifest.json``: format, the home it was taken from, when, the database kind, the schema
  version, and each file with its size and SHA-256;
- ``database/trainfaas.db`` (SQLite, copied with SQLite's online backup API: a consistent copy
  while the stack writes) or ``database/trainfaas.pgdump`` (PostgreSQL, ``pg_dump --format=custom``,
  consistent by its own snapshot);
- ``home/admin-token`` and ``home/instance-secret``;
- with ``artifacts``: ``home/executions/…`` (trained models, checkpoints, execution outputs) and
  ``home/models/…`` where it exists.

Restoring puts the database back (a new SQLite file, or ``pg_restore`` into the configured
PostgreSQL database), the files under the new home, and rewrites the paths the database holds
from the old home to the new one. The executions that were running when the backup was taken
are in progress on instances the new stack does not have: its reaper resets them, and they are
rerun (``on_reset`` rerun) like after any lost instance.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import peewee

from trainfaas.services.core.errors import ConfigError, Conflict, Unavailable
from trainfaas.services.core.settings import Settings
from trainfaas.services.store import records
from trainfaas.services.store.database import database, open_database
from trainfaas.services.store.migrations import migrate

FORMAT = 1
SECRETS = ("admin-token", "instance-secret")
ARTIFACT_DIRS = ("executions", "models")
Progress = Callable[[str], None]


def database_kind(url: str) -> str:
    scheme = urlparse(url).scheme
    if scheme.startswith("sqlite"):
        return "sqlite"
    if scheme.startswith("postgres"):
        return "postgresql"
    raise ConfigError(f"cannot back up a {scheme!r} database", {"TRAINFAAS_DATABASE_URL": "sqlite:///… or postgresql://…"})


def sqlite_path(url: str) -> Path:
    """The file of a sqlite:/// URL as the database layer reads it: sqlite:////abs/path or sqlite:///relative."""
    return Path(urlparse(url).path[1:]).resolve()


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise Unavailable(f"{name} is needed for a PostgreSQL database and is not on PATH: install the PostgreSQL client "
                          "(Debian: apt-get install postgresql-client) in the version of the server or newer")
    return found


def _copy_database(settings: Settings, into: Path) -> Path:
    """A consistent copy of the database in ``into``, taken while the stack may write."""
    if database_kind(settings.database_url) == "sqlite":
        source, target = sqlite_path(settings.database_url), into / "trainfaas.db"
        if not source.exists():
            raise ConfigError(f"there is no database at {source}", {"TRAINFAAS_DATABASE_URL": "the database of a stack that ran"})
        with sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True, timeout=30) as src, sqlite3.connect(target) as dst:
            src.backup(dst)  # the online backup API: pages copied under SQLite's own locking
        dst.close()
        return target
    target = into / "trainfaas.pgdump"
    subprocess.run([_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(target), settings.database_url],
                   check=True, capture_output=True)
    return target


def _schema_version(settings: Settings) -> int | None:
    open_database(settings.database_url)
    with database.connection_context():
        try:
            return max((row[0] for row in database.execute_sql("SELECT version FROM schemaversion")), default=None)
        except peewee.DatabaseError:
            return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _home_files(home: Path, artifacts: bool) -> list[Path]:
    """The files of the home a backup takes (regular files only: a link is never followed)."""
    files = [home / name for name in SECRETS if (home / name).is_file() and not (home / name).is_symlink()]
    for folder in ARTIFACT_DIRS if artifacts else ():
        root = home / folder
        if root.is_dir() and not root.is_symlink():
            files += sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    return files


def backup(settings: Settings, target: Path, artifacts: bool = False, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Write a backup of ``settings``' home and database to ``target``; return its manifest."""
    settings = settings.resolved()
    home = settings.home
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=target.resolve().parent) as scratch:
        progress("copying the database")
        copied = _copy_database(settings, Path(scratch))
        members = [(copied, f"database/{copied.name}")]
        for path in _home_files(home, artifacts):
            members.append((path, f"home/{path.relative_to(home).as_posix()}"))
        manifest: dict[str, Any] = {
            "format": FORMAT, "home": str(home), "created_at": time.time(), "database": database_kind(settings.database_url),
            "schema_version": _schema_version(settings), "artifacts": artifacts, "files": [],
        }
        partial = target.with_name(f".{target.name}.partial")
        partial.touch(mode=0o600)
        partial.chmod(0o600)
        with tarfile.open(partial, "w:gz") as archive:
            for number, (path, name) in enumerate(members, 1):
                try:
                    info = archive.gettarinfo(str(path), arcname=name)
                    # A hard link (a kept checkpoint shares its file) goes in as a file of its own:
                    # a restore takes plain files only.
                    info.type, info.linkname, info.size = tarfile.REGTYPE, "", path.stat().st_size
                    with path.open("rb") as handle:
                        archive.addfile(info, handle)
                except FileNotFoundError:  # removed while we read (a pruned checkpoint): not part of it
                    continue
                manifest["files"].append({"name": name, "size": info.size, "sha256": _sha256(path)})
                if number % 200 == 0:
                    progress(f"{number}/{len(members)} files")
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            archive.addfile(info, io.BytesIO(data))
        partial.replace(target)
    progress(f"wrote {target}: {len(manifest['files'])} files")
    return manifest


def _safe_members(archive: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """The archive's regular files by name; ConfigError for anything that could land elsewhere."""
    members = {}
    for member in archive.getmembers():
        parts = Path(member.name).parts
        if not member.isfile() or member.name.startswith("/") or ".." in parts or not parts:
            raise ConfigError(f"the backup holds {member.name!r}, which is not a plain file inside it", {"FILE": "a trainfaas backup"})
        members[member.name] = member
    return members


def read_manifest(source: Path) -> dict[str, Any]:
    with tarfile.open(source, "r:gz") as archive:
        members = _safe_members(archive)
        if "manifest.json" not in members:
            raise ConfigError(f"{source} is not a trainfaas backup: it has no manifest.json", {"FILE": "a file that trainfaas backup wrote"})
        manifest: dict[str, Any] = json.loads(archive.extractfile(members["manifest.json"]).read())  # type: ignore[union-attr]
    if manifest.get("format") != FORMAT:
        raise ConfigError(f"backup format {manifest.get('format')!r} is not one this version reads", {"FILE": f"a backup of format {FORMAT}"})
    return manifest


def _is_empty(home: Path) -> bool:
    return not home.exists() or not any(home.iterdir())


def _postgres_is_empty(url: str) -> bool:
    open_database(url)
    with database.connection_context():
        return not database.get_tables()


def _check_target(settings: Settings, manifest: dict[str, Any], force: bool) -> None:
    kind = database_kind(settings.database_url)
    if manifest["database"] != kind:
        raise ConfigError(f"the backup holds a {manifest['database']} database and this home is configured for {kind}",
                          {"TRAINFAAS_DATABASE_URL": f"a {manifest['database']} database"})
    if force:
        return
    if not _is_empty(settings.home):
        raise Conflict(f"{settings.home} is not empty: restore into a new home, or pass --force to overwrite it",
                       {"TRAINFAAS_HOME": "an empty or missing directory"})
    if kind == "postgresql" and not _postgres_is_empty(settings.database_url):
        raise Conflict("the PostgreSQL database already holds tables: restore into an empty one, or pass --force to replace them",
                       {"TRAINFAAS_DATABASE_URL": "an empty database"})


def _extract(archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path, sha256: str) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with archive.extractfile(member) as source, target.open("wb") as sink:  # type: ignore[union-attr]
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
            sink.write(block)
    target.chmod(0o600)
    if digest.hexdigest() != sha256:
        raise ConfigError(f"{member.name} in the backup does not match its checksum: the file is damaged", {"FILE": "an intact backup"})


def _restore_database(settings: Settings, dump: Path) -> None:
    if database_kind(settings.database_url) == "sqlite":
        target = sqlite_path(settings.database_url)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        dump.replace(target)
        return
    subprocess.run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction", "--dbname",
                    settings.database_url, str(dump)], check=True, capture_output=True)
    dump.unlink()


def rewrite_paths(old_home: str, new_home: str) -> int:
    """Point every path the database holds into ``old_home`` at ``new_home`` instead: text
    columns of every table (model and checkpoint files, execution outputs). Returns the tables changed."""
    old, new = old_home.rstrip("/") + "/", new_home.rstrip("/") + "/"
    if old == new:
        return 0
    tables = [value for value in vars(records).values()
              if isinstance(value, type) and issubclass(value, peewee.Model) and value is not records.BaseModel]
    changed = 0
    with database.atomic():
        existing = set(database.get_tables())
        for table in tables:
            if table._meta.table_name not in existing:
                continue
            for field in table._meta.sorted_fields:
                if isinstance(field, peewee.TextField):
                    table.update({field: peewee.fn.REPLACE(field, old, new)}).where(field.is_null(False)).execute()
            changed += 1
    return changed


def restore(settings: Settings, source: Path, force: bool = False, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Restore the backup ``source`` into ``settings``' home and database; return its manifest."""
    settings = settings.resolved()
    manifest = read_manifest(source)
    _check_target(settings, manifest, force)
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    dump: Path | None = None
    with tarfile.open(source, "r:gz") as archive:
        members = _safe_members(archive)
        for number, entry in enumerate(manifest["files"], 1):
            name = entry["name"]
            if name not in members:
                raise ConfigError(f"the backup's manifest names {name}, which it does not hold", {"FILE": "an intact backup"})
            if name.startswith("database/"):
                dump = settings.home / f".restore-{Path(name).name}"
                _extract(archive, members[name], dump, entry["sha256"])
            elif name.startswith("home/"):
                _extract(archive, members[name], settings.home / name.removeprefix("home/"), entry["sha256"])
            if number % 200 == 0:
                progress(f"{number}/{len(manifest['files'])} files")
    if dump is None:
        raise ConfigError("the backup holds no database", {"FILE": "a backup that trainfaas backup wrote"})
    progress("restoring the database")
    _restore_database(settings, dump)
    open_database(settings.database_url)
    migrate()  # a backup of an older version gets this version's schema
    rewrite_paths(manifest["home"], str(settings.home))
    progress(f"restored {len(manifest['files'])} files into {settings.home}")
    return manifest
