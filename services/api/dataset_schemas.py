"""Request and response bodies of the data set endpoints (trainfaas.services.api.datasets)."""
from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, create_model

from trainfaas.services.api.schemas import ListQuery, Out, Strict
from trainfaas.services.control.dataset_rules import Constraints

REF = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class DatasetCreate(Strict):
    name: str = Field(min_length=1, max_length=100, description="1 to 100 letters, digits, '_', '.' or '-', starting with a letter or digit.")
    path: str = Field(min_length=1, max_length=4096, description="The folder inside a data root (or relative to the first one).")
    task: str | None = Field(None, min_length=1, max_length=50, description="The task it is for (classification, detection...); trainings of other tasks are refused.")
    project: str | None = Field(None, max_length=100, description="Default: the token's project, or default.")


class DatasetQuery(ListQuery):
    project: str | None = Field(None, max_length=100, description="Only this project's (admin tokens see all).")
    deleted: bool = Field(False, description="List data sets deleted with force (kept for the trainings that read them) too.")


class DeleteQuery(Strict):
    force: bool = Field(False, description="Delete one that trainings used: it is marked deleted and its versions stay readable.")


class VersionQuery(Strict):
    offset: int = Field(0, ge=0, le=10**9, description="The first file of the manifest to answer.")
    limit: int = Field(1000, ge=0, le=10000, description="Files of the manifest to answer.")


DiffQuery = create_model(
    "DiffQuery", __config__=ConfigDict(extra="forbid"), __doc__="The two versions to compare: numbers, latest or aliases.",
    **{"from": (str, Field(pattern=REF, max_length=64, description="The older version: a number, latest or an alias.")),
       "to": (str, Field(pattern=REF, max_length=64, description="The newer version: a number, latest or an alias."))},
)


class AliasSet(Strict):
    version: int = Field(ge=1, le=10**9, description="The version number the alias names.")


class ShareCreate(Strict):
    project: str = Field(min_length=1, max_length=100, description="The project that may read the data set.")


class VersionSummary(Out):
    number: int
    digest: str = Field(description="SHA-256 of the sorted manifest.")
    format: str = Field(description="The layouts found, +-joined: image-folder, image-labels, yolo, image-mask, text-csv-jsonl, conll; or files.")
    subsets: dict[str, dict[str, int]] = Field(description="Samples per label of each subset.")
    files: int
    bytes: int
    created_at: str | None
    aliases: list[str]


class VersionOut(VersionSummary):
    dataset_id: str
    dataset: str
    created: bool = Field(description="Whether this request took the version (false: the files are those of this version).")
    manifest: list[tuple[str, int, str]] = Field(description="[relative path, size, sha256] per file, sorted; a page of them.")
    manifest_offset: int


class DatasetOut(Out):
    id: str
    name: str
    project: str
    path: str
    task: str | None
    constraints: dict[str, Any]
    aliases: dict[str, int] = Field(description="Each alias and the version it names; latest is the newest.")
    shared_with: list[str]
    versions: int
    latest: VersionSummary | None
    created_at: str | None
    deleted_at: str | None


class DatasetDeleted(Out):
    id: str
    name: str
    kept: bool = Field(description="True: trainings read it, so it is only marked deleted and its versions stay readable.")


class AliasesOut(Out):
    dataset_id: str
    aliases: dict[str, int]


class SharesOut(Out):
    dataset_id: str
    shared_with: list[str]


class ConstraintsOut(Out):
    constraints: dict[str, Any]


class DiffOut(Out):
    dataset_id: str
    from_version: int
    to_version: int
    files_added: list[str]
    files_removed: list[str]
    files_changed: list[str]
    labels_added: list[str]
    labels_removed: list[str]
    counts_changed: list[dict[str, Any]]


__all__ = ["Constraints"]
