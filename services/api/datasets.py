"""Registered data sets: register, take versions, list, show and compare them, name them with aliases,
set their constraints, share them read-only with another project, delete them.

A data set in a path may be its id, a unique id prefix, or its name in the token's project."""
from __future__ import annotations

from typing import Any

from flask import Blueprint

from trainfaas.adapters.manifest import diff
from trainfaas.services.api import iso, paginate, settings
from trainfaas.services.api.dataset_schemas import (
    AliasesOut,
    AliasSet,
    Constraints,
    ConstraintsOut,
    DatasetCreate,
    DatasetDeleted,
    DatasetOut,
    DatasetQuery,
    DeleteQuery,
    DiffOut,
    DiffQuery,
    ShareCreate,
    SharesOut,
    VersionOut,
    VersionQuery,
    VersionSummary,
)
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import ListQuery, Page
from trainfaas.services.control import dataset_rules as rules
from trainfaas.services.control import dataset_versions as control
from trainfaas.services.control.tokens import Principal
from trainfaas.services.core.errors import NotFound
from trainfaas.services.store.records import Dataset, DatasetVersion, Project

bp = Blueprint("datasets", __name__, url_prefix="/api/v1")


def version_summary(row: DatasetVersion, aliases: dict[str, int]) -> dict[str, Any]:
    return {"number": row.number, "digest": row.digest, "format": row.format, "subsets": row.subsets, "files": row.files,
            "bytes": row.bytes, "created_at": iso(row.created_at), "aliases": sorted(a for a, n in aliases.items() if n == row.number)}


def version_view(dataset: Dataset, row: DatasetVersion, created: bool, offset: int = 0, limit: int = 1000) -> dict[str, Any]:
    return {**version_summary(row, control.aliases(dataset)), "dataset_id": dataset.id, "dataset": dataset.name, "created": created,
            "manifest": row.manifest[offset : offset + limit], "manifest_offset": offset}


def dataset_view(dataset: Dataset) -> dict[str, Any]:
    aliases = control.aliases(dataset)
    newest = control.newest_version(dataset)
    return {"id": dataset.id, "name": dataset.name, "project": dataset.project, "path": dataset.path, "task": dataset.task,
            "constraints": dataset.constraints or {}, "aliases": aliases, "shared_with": control.shares(dataset),
            "versions": DatasetVersion.select().where(DatasetVersion.dataset == dataset).count(),
            "latest": version_summary(newest, aliases) if newest is not None else None,
            "created_at": iso(dataset.created_at), "deleted_at": iso(dataset.deleted_at)}


@endpoint(bp, "POST", "/datasets", body=DatasetCreate, response=DatasetOut, status=201, access="write", errors=(404, 409),
          links={"id": "/datasets/{dataset_id}"})
def register(body: DatasetCreate, principal: Principal) -> dict[str, Any]:
    """Register a folder in the data roots as a data set of the project, and take its version 1: the manifest of every
    file (path, size, sha256), labels and counts per subset, format and digest. 422 naming the limit for a tree too large."""
    project = principal.project_for_new(body.project)
    dataset, _ = control.register(settings(), project, body.name, body.path, body.task)
    return dataset_view(dataset)


@endpoint(bp, "GET", "/datasets", query=DatasetQuery, response=Page[DatasetOut], errors=(404,))
def index(query: DatasetQuery, principal: Principal) -> dict[str, Any]:
    """The data sets the token reads (its project's and those shared with it), by name."""
    if query.project is not None:
        principal.project_for_new(query.project)  # an unknown or unreachable project is a 404
    scope = control.visible(query.project or principal.reach)
    rows = Dataset.select() if scope is None else Dataset.select().where(scope)
    if not query.deleted:
        rows = rows.where(Dataset.deleted_at.is_null())
    items, cursor = paginate(rows, (Dataset.name, Dataset.id), query.limit, query.cursor, descending=False)
    return {"items": [dataset_view(row) for row in items], "next_cursor": cursor}


@endpoint(bp, "GET", "/datasets/<dataset_id>", response=DatasetOut)
def show(dataset_id: str, principal: Principal) -> dict[str, Any]:
    """One data set: its aliases, shares, constraints and newest version."""
    return dataset_view(control.get_dataset(dataset_id, principal.reach))


@endpoint(bp, "DELETE", "/datasets/<dataset_id>", query=DeleteQuery, response=DatasetDeleted, access="write", errors=(403, 409))
def delete(dataset_id: str, query: DeleteQuery, principal: Principal) -> dict[str, Any]:
    """Delete a data set. 409 naming an execution that trained on it, unless ``force``: then it is only marked
    deleted (hidden, its name free again) and its versions stay readable."""
    dataset = control.get_dataset(dataset_id, principal.reach, write=True, deleted=False)
    done = control.delete(dataset, query.force)
    return {"id": done.dataset.id, "name": done.dataset.name, "kept": done.kept}


@endpoint(bp, "POST", "/datasets/<dataset_id>/versions", response=VersionOut, access="write", errors=(403, 409))
def take_version(dataset_id: str, principal: Principal) -> dict[str, Any]:
    """Take a new version when the files changed since the newest; otherwise answer the newest (``created`` false)."""
    dataset = control.get_dataset(dataset_id, principal.reach, write=True, deleted=False)
    row, created = control.take_version(settings(), dataset)
    return version_view(dataset, row, created)


@endpoint(bp, "GET", "/datasets/<dataset_id>/versions", query=ListQuery, response=Page[VersionSummary])
def versions(dataset_id: str, query: ListQuery, principal: Principal) -> dict[str, Any]:
    """The versions of a data set, newest first (without their manifests)."""
    dataset = control.get_dataset(dataset_id, principal.reach)
    rows = DatasetVersion.select(*[f for f in DatasetVersion._meta.sorted_fields if f.name != "manifest"]).where(
        DatasetVersion.dataset == dataset)
    items, cursor = paginate(rows, (DatasetVersion.number,), query.limit, query.cursor)
    aliases = control.aliases(dataset)
    return {"items": [version_summary(row, aliases) for row in items], "next_cursor": cursor}


@endpoint(bp, "GET", "/datasets/<dataset_id>/versions/<version>", query=VersionQuery, response=VersionOut)
def show_version(dataset_id: str, version: str, query: VersionQuery, principal: Principal) -> dict[str, Any]:
    """One version (a number, latest or an alias) with a page of its manifest."""
    dataset = control.get_dataset(dataset_id, principal.reach)
    return version_view(dataset, control.version(dataset, version), False, query.offset, query.limit)


@endpoint(bp, "GET", "/datasets/<dataset_id>/diff", query=DiffQuery, response=DiffOut)
def compare(dataset_id: str, query: Any, principal: Principal) -> dict[str, Any]:
    """What changed from one version to another: files added, removed and changed, labels added and removed, counts changed."""
    dataset = control.get_dataset(dataset_id, principal.reach)
    before, after = control.version(dataset, getattr(query, "from")), control.version(dataset, query.to)
    changes = diff({"manifest": before.manifest, "subsets": before.subsets}, {"manifest": after.manifest, "subsets": after.subsets})
    return {"dataset_id": dataset.id, "from_version": before.number, "to_version": after.number, **changes}


@endpoint(bp, "PUT", "/datasets/<dataset_id>/aliases/<alias>", body=AliasSet, response=AliasesOut, access="write", errors=(403,))
def set_alias(dataset_id: str, alias: str, body: AliasSet, principal: Principal) -> dict[str, Any]:
    """Point an alias (``train``, ``2026-q4``) at a version: a new alias, or a move. ``latest`` is always the newest."""
    dataset = control.get_dataset(dataset_id, principal.reach, write=True, deleted=False)
    return {"dataset_id": dataset.id, "aliases": control.set_alias(dataset, alias, body.version)}


@endpoint(bp, "DELETE", "/datasets/<dataset_id>/aliases/<alias>", response=AliasesOut, access="write", errors=(403,))
def delete_alias(dataset_id: str, alias: str, principal: Principal) -> dict[str, Any]:
    """Remove an alias; the version it named stays."""
    dataset = control.get_dataset(dataset_id, principal.reach, write=True, deleted=False)
    return {"dataset_id": dataset.id, "aliases": control.delete_alias(dataset, alias)}


@endpoint(bp, "PUT", "/datasets/<dataset_id>/constraints", body=Constraints, response=ConstraintsOut, access="write", errors=(403,))
def set_constraints(dataset_id: str, body: Constraints, principal: Principal) -> dict[str, Any]:
    """Set the data set's constraints (replacing them), checked at every training on it; they override its project's."""
    dataset = control.get_dataset(dataset_id, principal.reach, write=True, deleted=False)
    return {"constraints": rules.set_constraints(dataset, body)}


@endpoint(bp, "POST", "/datasets/<dataset_id>/shares", body=ShareCreate, response=SharesOut, access="admin", errors=(404,))
def share(dataset_id: str, body: ShareCreate, principal: Principal) -> dict[str, Any]:
    """Let another project read the data set and train on it, read-only."""
    dataset = control.get_dataset(dataset_id, principal.reach, deleted=False)
    return {"dataset_id": dataset.id, "shared_with": control.share(dataset, body.project)}


@endpoint(bp, "DELETE", "/datasets/<dataset_id>/shares/<project>", response=SharesOut, access="admin")
def unshare(dataset_id: str, project: str, principal: Principal) -> dict[str, Any]:
    """Stop sharing the data set with a project."""
    dataset = control.get_dataset(dataset_id, principal.reach)
    return {"dataset_id": dataset.id, "shared_with": control.unshare(dataset, project)}


def _project(name: str, principal: Principal) -> str:
    if not principal.sees(name) or Project.get_or_none(Project.name == name) is None:
        raise NotFound(f"project {name} does not exist", {"name": "a project this token can reach"})
    return name


@endpoint(bp, "GET", "/projects/<name>/dataset-constraints", response=ConstraintsOut)
def project_constraints(name: str, principal: Principal) -> dict[str, Any]:
    """The data set constraints of a project, checked at every training of it."""
    return {"constraints": rules.project_constraints(_project(name, principal))}


@endpoint(bp, "PUT", "/projects/<name>/dataset-constraints", body=Constraints, response=ConstraintsOut, access="write")
def set_project_constraints(name: str, body: Constraints, principal: Principal) -> dict[str, Any]:
    """Set the data set constraints of a project (replacing them); a data set's own override them rule by rule."""
    return {"constraints": rules.set_project_constraints(_project(name, principal), body)}
