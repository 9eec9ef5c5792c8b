"""Registered data sets: a project's named folders in the data roots, taken as numbered immutable versions.

A version is the manifest of every file (relative path, size, SHA-256), the format the layout shows,
the labels and counts per subset, and the digest of the sorted manifest (trainfaas.adapters.manifest).
Taking a version of unchanged files answers the version that has them. ``latest`` names the newest
version; other aliases are set by users. A data set belongs to its project; an admin may share it,
read-only, with another. Deleting one that trainings used is refused unless forced, and a forced
deletion only marks it deleted, so that the versions those trainings read stay readable.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import peewee

from trainfaas.adapters.manifest import Budget, take
from trainfaas.services.control import ids
from trainfaas.services.control.datasets import resolve_dataset
from trainfaas.services.core.errors import ConfigError, Conflict, Forbidden, NotFound
from trainfaas.services.core.settings import Settings
from trainfaas.services.store.database import database
from trainfaas.services.store.records import Dataset, DatasetAlias, DatasetShare, DatasetUse, DatasetVersion, Execution, Project, now_s

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
LATEST = "latest"
NAME_RULE = "1 to 100 letters, digits, '_', '.' or '-', starting with a letter or digit"
ALIAS_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit; not only digits (a version number), not 'latest'"


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a data set name", {"name": NAME_RULE})
    return name


def check_alias(alias: str) -> str:
    if not ALIAS.fullmatch(alias) or alias == LATEST or alias.isdigit():
        raise ConfigError(f"{alias!r} cannot be an alias", {"alias": ALIAS_RULE})
    return alias


def _budget(settings: Settings) -> Budget:
    return Budget(settings.dataset_version_max_files, settings.dataset_version_max_bytes, settings.dataset_version_seconds)


def visible(project: str | None) -> Any:
    """The condition selecting the data sets ``project`` reads (its own and those shared with it); None: all."""
    if project is None:
        return None
    shared = DatasetShare.select(DatasetShare.dataset).where(DatasetShare.project == project)
    return (Dataset.project == project) | (Dataset.id.in_(shared))


def get_dataset(given: str, project: str | None, write: bool = False, deleted: bool = True) -> Dataset:
    """The data set ``given`` (an id, a unique id prefix, or a name in ``project``) that ``project``
    reads (None: any). A shared one is Forbidden to change; another project's is NotFound."""
    scope = visible(project)
    if not deleted:
        scope = Dataset.deleted_at.is_null() if scope is None else scope & Dataset.deleted_at.is_null()
    if NAME.fullmatch(given):
        named = _named(given, project)
        if named is not None:
            return _writable(named, project, write)
    return _writable(ids.find(Dataset, given, "dataset", scope), project, write)


def _named(name: str, project: str | None) -> Dataset | None:
    """The data set called ``name`` that ``project`` reads (its own first), or for an admin (None) the one of that name."""
    rows = Dataset.select().where((Dataset.name == name) & Dataset.deleted_at.is_null())
    if project is not None:
        return rows.where(visible(project)).order_by((Dataset.project == project).desc(), Dataset.created_at).first()
    found = list(rows.limit(2))
    if len(found) > 1:
        raise Conflict(f"several projects have a data set {name}: give its id", {"dataset_id": "the id of the data set"})
    return found[0] if found else None


def _writable(dataset: Dataset, project: str | None, write: bool) -> Dataset:
    if write and project is not None and dataset.project != project:
        raise Forbidden(f"data set {dataset.name} is shared with project {project} read-only",
                        {"dataset_id": f"a data set of project {project}"})
    return dataset


def register(settings: Settings, project: str, name: str, path: str, task: str | None) -> tuple[Dataset, DatasetVersion]:
    """Register folder ``path`` (inside the data roots) as data set ``name`` of ``project`` and take its version 1."""
    check_name(name)
    try:
        folder = resolve_dataset(settings, path)
    except ConfigError as exc:
        raise ConfigError(str(exc), {"path": next(iter(exc.fields.values()), "a directory inside the data roots")}) from None
    manifest = take(folder, _budget(settings))  # outside the transaction: it may take a while
    with database.atomic():
        if Dataset.get_or_none((Dataset.project == project) & (Dataset.name == name) & Dataset.deleted_at.is_null()) is not None:
            raise Conflict(f"project {project} already has a data set {name}", {"name": "a name no data set of the project has"})
        try:
            with database.atomic():
                dataset = Dataset.create(project=project, name=name, path=str(folder), task=task)
        except peewee.IntegrityError:  # registered by a racing request in between
            raise Conflict(f"project {project} already has a data set {name}", {"name": "a name no data set of the project has"}) from None
        return dataset, _record(dataset, manifest, 1)


def _record(dataset: Dataset, manifest: Any, number: int) -> DatasetVersion:
    return DatasetVersion.create(dataset=dataset, number=number, digest=manifest.digest, format=manifest.format,
                                 subsets=manifest.subsets, manifest=manifest.files, files=len(manifest.files), bytes=manifest.bytes)


def take_version(settings: Settings, dataset: Dataset) -> tuple[DatasetVersion, bool]:
    """A new version of ``dataset`` when its files changed since its newest; else the newest (and False)."""
    if dataset.deleted_at is not None:
        raise NotFound(f"data set {dataset.name} was deleted", {"dataset_id": "a data set that is not deleted"})
    manifest = take(resolve_dataset(settings, dataset.path), _budget(settings))
    with database.atomic():
        newest = newest_version(dataset)
        if newest is not None and newest.digest == manifest.digest:
            return newest, False
        try:
            with database.atomic():
                return _record(dataset, manifest, (newest.number if newest else 0) + 1), True
        except peewee.IntegrityError:  # a racing request took the same number
            raise Conflict(f"data set {dataset.name} got a new version meanwhile; ask again",
                           {"dataset_id": "retry once the other version is taken"}) from None


def newest_version(dataset: Dataset) -> DatasetVersion | None:
    return DatasetVersion.select().where(DatasetVersion.dataset == dataset).order_by(DatasetVersion.number.desc()).first()


def version(dataset: Dataset, ref: str) -> DatasetVersion:
    """The version ``ref`` (a number, ``latest`` or an alias) of ``dataset``; NotFound naming the reference."""
    number: int | None
    if ref == LATEST:
        found = newest_version(dataset)
        number = found.number if found else None
    elif ref.isascii() and ref.isdigit() and len(ref) <= 9:
        number = int(ref)
    else:
        alias = DatasetAlias.get_or_none((DatasetAlias.dataset == dataset) & (DatasetAlias.alias == ref))
        number = alias.number if alias else None
    row = None if number is None else DatasetVersion.get_or_none((DatasetVersion.dataset == dataset) & (DatasetVersion.number == number))
    if row is None:
        raise NotFound(f"data set {dataset.name} has no version {ref}", {"version": "a version number, latest or an alias of the data set"})
    return row  # type: ignore[no-any-return]


def aliases(dataset: Dataset) -> dict[str, int]:
    """The data set's aliases and the versions they name, ``latest`` included."""
    named = {row.alias: row.number for row in DatasetAlias.select().where(DatasetAlias.dataset == dataset).order_by(DatasetAlias.alias)}
    newest = newest_version(dataset)
    return {LATEST: newest.number, **named} if newest is not None else named


def set_alias(dataset: Dataset, alias: str, number: int) -> dict[str, int]:
    """Point ``alias`` at version ``number`` (a new alias, or a move)."""
    check_alias(alias)
    version(dataset, str(number))
    with database.atomic():
        updated = (DatasetAlias.update(number=number, updated_at=now_s())
                   .where((DatasetAlias.dataset == dataset) & (DatasetAlias.alias == alias)).execute())
        if not updated:
            try:
                with database.atomic():
                    DatasetAlias.create(dataset=dataset, alias=alias, number=number)
            except peewee.IntegrityError:
                DatasetAlias.update(number=number, updated_at=now_s()).where(
                    (DatasetAlias.dataset == dataset) & (DatasetAlias.alias == alias)).execute()
    return aliases(dataset)


def delete_alias(dataset: Dataset, alias: str) -> dict[str, int]:
    if alias == LATEST:
        raise ConfigError("latest always names the newest version and cannot be deleted", {"alias": "an alias set by a user"})
    removed = DatasetAlias.delete().where((DatasetAlias.dataset == dataset) & (DatasetAlias.alias == alias)).execute()
    if not removed:
        raise NotFound(f"data set {dataset.name} has no alias {alias}", {"alias": "an alias of the data set"})
    return aliases(dataset)


def share(dataset: Dataset, project: str) -> list[str]:
    """Let ``project`` read ``dataset``; answer every project it is shared with."""
    if Project.get_or_none(Project.name == project) is None:
        raise NotFound(f"project {project} does not exist", {"project": "an existing project"})
    if project == dataset.project:
        raise ConfigError(f"data set {dataset.name} belongs to project {project}", {"project": "another project than the data set's own"})
    try:
        with database.atomic():
            DatasetShare.create(dataset=dataset, project=project)
    except peewee.IntegrityError:
        pass  # already shared: sharing again changes nothing
    return shares(dataset)


def shares(dataset: Dataset) -> list[str]:
    return [row.project for row in DatasetShare.select().where(DatasetShare.dataset == dataset).order_by(DatasetShare.project)]


def unshare(dataset: Dataset, project: str) -> list[str]:
    if not DatasetShare.delete().where((DatasetShare.dataset == dataset) & (DatasetShare.project == project)).execute():
        raise NotFound(f"data set {dataset.name} is not shared with project {project}", {"project": "a project it is shared with"})
    return shares(dataset)


@dataclass
class Deleted:
    dataset: Dataset
    kept: bool  # marked deleted, versions kept (executions read them)


def delete(dataset: Dataset, force: bool) -> Deleted:
    """Delete ``dataset``: 409 naming an execution that trained on it unless ``force``; then it is only marked deleted."""
    used = (DatasetUse.select(DatasetUse.execution).join(Execution, on=(DatasetUse.execution == Execution.id))
            .where(DatasetUse.dataset == dataset).first())
    if used is None:
        dataset.delete_instance(recursive=True)
        return Deleted(dataset, kept=False)
    if not force:
        raise Conflict(f"data set {dataset.name} is what execution {used.execution} trained on; delete with force=true to keep"
                       " its versions readable but hide it", {"execution_id": used.execution})
    DatasetAlias.delete().where(DatasetAlias.dataset == dataset).execute()
    DatasetShare.delete().where(DatasetShare.dataset == dataset).execute()
    Dataset.update(deleted_at=now_s()).where(Dataset.id == dataset.id).execute()
    return Deleted(Dataset.get_by_id(dataset.id), kept=True)
