"""Data sets: the project's registered data sets, one data set's versions, aliases and differences,
registering one, taking a version and deleting one."""
from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for

from trainfaas.services.api import datasets as api_datasets
from trainfaas.services.api.dataset_schemas import AliasSet, DatasetCreate, DatasetQuery, DeleteQuery, DiffQuery
from trainfaas.services.api.schemas import ListQuery
from trainfaas.services.ui.sessions import Session
from trainfaas.services.ui.web import bp, failure_fields, page, render
from trainfaas.services.ui.wizard import folders_of_first_root

REGISTER_FIELDS = ("name", "path", "task")
MAX_DIFF_LISTED = 200


def labels_of(version: dict[str, Any] | None) -> list[str]:
    """The labels of a version, over all its subsets."""
    return sorted({label for counts in ((version or {}).get("subsets") or {}).values() for label in counts})


@bp.get("/datasets")
@page()
def datasets(session: Session) -> Any:
    return _datasets_page(session, {}, "", {}, 200)


def _datasets_page(session: Session, form: dict[str, str], message: str, fields: dict[str, str], status: int) -> Any:
    listed = api_datasets.index(query=DatasetQuery(limit=100, cursor=request.args.get("cursor") or None), principal=session.principal)
    return render("datasets.html", rows=listed["items"], next_cursor=listed["next_cursor"], form=form, message=message,
                  fields=fields, folders=folders_of_first_root(), labels_of=labels_of), status


@bp.post("/datasets")
@page("write", changes=True)
def dataset_register(session: Session) -> Any:
    form = {key: request.form.get(key, "").strip() for key in REGISTER_FIELDS}
    try:
        body = DatasetCreate.model_validate({key: value for key, value in form.items() if value})
        created = api_datasets.register(body=body, principal=session.principal)
    except Exception as exc:  # noqa: BLE001 - failure_fields re-raises anything that is not the caller's mistake
        message, fields = failure_fields(exc)
        return _datasets_page(session, form, message, fields, getattr(exc, "http_status", 422))
    return redirect(url_for("ui.dataset", dataset_id=created["id"], registered=1))


@bp.get("/datasets/<dataset_id>")
@page()
def dataset(session: Session, dataset_id: str) -> Any:
    return _dataset_page(session, dataset_id, "", {})


def _dataset_page(session: Session, dataset_id: str, alias_message: str, alias_fields: dict[str, str]) -> Any:
    view = api_datasets.show(dataset_id=dataset_id, principal=session.principal)
    versions = api_datasets.versions(dataset_id=view["id"], query=ListQuery(limit=100), principal=session.principal)["items"]
    picked = {"from": request.args.get("from", "").strip(), "to": request.args.get("to", "").strip()}
    difference, message, fields, status = None, "", {}, 200
    if picked["from"] and picked["to"]:
        try:
            difference = api_datasets.compare(dataset_id=view["id"], query=DiffQuery.model_validate(picked), principal=session.principal)
        except Exception as exc:  # noqa: BLE001 - failure_fields re-raises anything that is not the caller's mistake
            message, fields = failure_fields(exc)
            status = getattr(exc, "http_status", 422)
    return render("dataset.html", dataset=view, versions=versions, picked=picked, difference=difference, message=message,
                  fields=fields, labels_of=labels_of, max_listed=MAX_DIFF_LISTED, notice=_notice(), alias_message=alias_message,
                  alias_fields=alias_fields), 422 if alias_message else status


def _notice() -> str:
    if request.args.get("registered"):
        return "Registered: version 1 is the files as they are now."
    if request.args.get("version"):
        return ("A new version was taken." if request.args["version"] == "new"
                else "The files have not changed since the newest version: no version was taken.")
    return ""


@bp.post("/datasets/<dataset_id>/versions")
@page("write", changes=True)
def dataset_version(session: Session, dataset_id: str) -> Any:
    taken = api_datasets.take_version(dataset_id=dataset_id, principal=session.principal)
    return redirect(url_for("ui.dataset", dataset_id=taken["dataset_id"], version="new" if taken["created"] else "same"))


@bp.post("/datasets/<dataset_id>/delete")
@page("write", changes=True)
def dataset_delete(session: Session, dataset_id: str) -> Any:
    query = DeleteQuery(force=request.form.get("force") == "1")
    api_datasets.delete(dataset_id=dataset_id, query=query, principal=session.principal)
    return redirect(url_for("ui.datasets"))


@bp.post("/datasets/<dataset_id>/aliases")
@page("write", changes=True)
def dataset_alias(session: Session, dataset_id: str) -> Any:
    alias = request.form.get("alias", "").strip()
    try:
        body = AliasSet.model_validate({"version": request.form.get("version", "")})
        done = api_datasets.set_alias(dataset_id=dataset_id, alias=alias, body=body, principal=session.principal)
    except Exception as exc:  # noqa: BLE001 - failure_fields re-raises anything that is not the caller's mistake
        message, fields = failure_fields(exc)
        return _dataset_page(session, dataset_id, message, fields)
    return redirect(url_for("ui.dataset", dataset_id=done["dataset_id"]))


@bp.post("/datasets/<dataset_id>/aliases/<alias>/delete")
@page("write", changes=True)
def dataset_alias_delete(session: Session, dataset_id: str, alias: str) -> Any:
    done = api_datasets.delete_alias(dataset_id=dataset_id, alias=alias, principal=session.principal)
    return redirect(url_for("ui.dataset", dataset_id=done["dataset_id"]))
