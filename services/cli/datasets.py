"""``trainfaas datasets``: write the bundled sample data sets; register data sets, take, list, show and
compare their versions, name versions with aliases, set constraints, share and delete them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from trainfaas.adapters.datasets import sample_writer
from trainfaas.services.cli.context import client_of
from trainfaas.services.cli.output import Column, json_option, print_fields, print_json, print_rows, print_table, printable, say


@click.group()
def datasets() -> None:
    """Registered data sets and their versions, and the bundled samples."""


@datasets.command("sample")
@click.argument("name", type=click.Choice(["digits", "shapes", "text", "ner"]))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def datasets_sample(name: str, directory: Path) -> None:
    """Write a bundled sample data set into DIRECTORY: digits (image folder), shapes (YOLO
    detection/instance segmentation and image+mask semantic segmentation), text (CSV text
    classification) or ner (CoNLL token classification)."""
    summary = sample_writer(name)(directory)
    say(f"wrote {name} to {directory}: {summary}")


DATASET_COLUMNS = (
    Column("id", kind="id"), Column("name", kind="name"), Column("project", kind="name"),
    Column("versions", kind="word"), Column("latest", lambda d: (d["latest"] or {}).get("format", ""), kind="word"),
    Column("aliases", lambda d: ", ".join(f"{a}={n}" for a, n in d["aliases"].items())), Column("path"),
)
VERSION_COLUMNS = (
    Column("version", "number", kind="word"), Column("aliases", lambda v: ", ".join(v["aliases"]), kind="word"),
    Column("format", kind="word"), Column("files", kind="word"), Column("bytes", kind="word"),
    Column("digest", lambda v: v["digest"][:12], kind="word"), Column("created", "created_at", kind="time"),
    Column("labels", lambda v: _counts(v["subsets"])),
)


def _counts(subsets: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{subset}: " + ", ".join(f"{label} {n}" for label, n in labels.items()) for subset, labels in subsets.items())


def _split(reference: str) -> tuple[str, str]:
    name, _, version = reference.partition("@")
    return name, version or "latest"


@datasets.command("register")
@click.argument("name")
@click.argument("path")
@click.option("--task", default=None, help="The task it is for (trainings of other tasks are refused).")
@click.option("--project", default=None)
@json_option()
@click.pass_context
def datasets_register(ctx: click.Context, name: str, path: str, task: str | None, project: str | None, as_json: bool) -> None:
    """Register the folder PATH (inside the data roots) as data set NAME and take its version 1."""
    dataset = client_of(ctx).register_dataset(name, path, task=task, project=project)
    if as_json:
        print_json(dataset)
    else:
        latest = dataset["latest"]
        say(f"data set {dataset['name']} registered ({dataset['id']}): version 1, {latest['format']}, {latest['files']} files,"
            f" digest {latest['digest'][:12]}")


@datasets.command("list")
@click.option("--project", default=None)
@click.option("--deleted", is_flag=True, help="Include data sets deleted with --force.")
@json_option()
@click.pass_context
def datasets_list(ctx: click.Context, project: str | None, deleted: bool, as_json: bool) -> None:
    """The data sets the token reads: its project's and those shared with it."""
    print_rows(client_of(ctx).list_datasets(project=project, deleted="true" if deleted else None), DATASET_COLUMNS, as_json)


@datasets.command("show")
@click.argument("reference")
@click.option("--files", "files", default=0, type=int, help="Print this many files of the version's manifest.")
@json_option()
@click.pass_context
def datasets_show(ctx: click.Context, reference: str, files: int, as_json: bool) -> None:
    """A data set (NAME, ID) or one version of it (NAME@3, NAME@ALIAS): labels, counts, digest and files."""
    client = client_of(ctx)
    name, version = _split(reference)
    dataset = client.get_dataset(name)
    shown = client.dataset_version(dataset["id"], version, limit=files)
    if as_json:
        print_json({**dataset, "version": shown} if "@" in reference else dataset)
        return
    print_fields(dataset, ("id", "name", "project", "path", "task", "versions", "aliases", "shared_with", "constraints", "deleted_at"), 12)
    print_table(VERSION_COLUMNS, [shown], f"version {shown['number']}")
    for path, size, sha in shown["manifest"]:
        click.echo(f"{sha[:12]} {size:>10} {printable(path)}")


@datasets.command("versions")
@click.argument("dataset")
@click.option("--take", is_flag=True, help="Take a new version first, if the files changed.")
@json_option()
@click.pass_context
def datasets_versions(ctx: click.Context, dataset: str, take: bool, as_json: bool) -> None:
    """The versions of DATASET, newest first; --take takes a new one when its files changed."""
    client = client_of(ctx)
    if take:
        taken = client.take_dataset_version(dataset)
        if not as_json:
            say(f"version {taken['number']} {'taken' if taken['created'] else 'unchanged: the files are those of this version'}")
    print_rows(client.dataset_versions(dataset), VERSION_COLUMNS, as_json)


@datasets.command("alias")
@click.argument("dataset")
@click.argument("alias")
@click.argument("version", required=False, type=int)
@click.option("--delete", "remove", is_flag=True, help="Remove the alias.")
@click.pass_context
def datasets_alias(ctx: click.Context, dataset: str, alias: str, version: int | None, remove: bool) -> None:
    """Point ALIAS (train, 2026-q4...) of DATASET at VERSION, or remove it with --delete."""
    client = client_of(ctx)
    if remove == (version is not None):
        raise click.UsageError("give a VERSION to point the alias at, or --delete")
    answer = client.delete_dataset_alias(dataset, alias) if remove else client.set_dataset_alias(dataset, alias, version or 0)
    say("aliases: " + ", ".join(f"{a}={n}" for a, n in answer["aliases"].items()))


@datasets.command("diff")
@click.argument("dataset")
@click.argument("from_version")
@click.argument("to_version", default="latest")
@json_option()
@click.pass_context
def datasets_diff(ctx: click.Context, dataset: str, from_version: str, to_version: str, as_json: bool) -> None:
    """What changed in DATASET from one version to another (numbers, latest or aliases)."""
    changes = client_of(ctx).dataset_diff(dataset, from_version, to_version)
    if as_json:
        print_json(changes)
        return
    say(f"{dataset}: version {changes['from_version']} -> {changes['to_version']}")
    for key, mark in (("files_added", "+"), ("files_removed", "-"), ("files_changed", "~"), ("labels_added", "+label"),
                      ("labels_removed", "-label")):
        for item in changes[key]:
            click.echo(f"{mark} {printable(item)}")
    for count in changes["counts_changed"]:
        click.echo(f"# {printable(count['subset'])}/{printable(count['label'])}: {count['from']} -> {count['to']}")


@datasets.command("delete")
@click.argument("dataset")
@click.option("--force", is_flag=True, help="Also one that trainings read: it is hidden, its versions kept.")
@click.pass_context
def datasets_delete(ctx: click.Context, dataset: str, force: bool) -> None:
    """Delete DATASET (refused while executions reference it, unless --force)."""
    done = client_of(ctx).delete_dataset(dataset, force)
    say(f"data set {done['name']} deleted" + (" (its versions kept for the trainings that read them)" if done["kept"] else ""))


@datasets.command("constraints")
@click.argument("dataset", required=False)
@click.option("--project", default=None, help="Set the project's constraints instead of a data set's.")
@click.option("--min-per-label", type=int, default=None)
@click.option("--max-label-share", type=float, default=None)
@click.option("--no-empty-subset", is_flag=True, default=None)
@click.option("--labels-match-model", is_flag=True, default=None)
@click.pass_context
def datasets_constraints(ctx: click.Context, dataset: str | None, project: str | None, **rules: Any) -> None:
    """Replace the constraints of DATASET (or of --project) checked at every training; none given: clear them."""
    client = client_of(ctx)
    if (dataset is None) == (project is None):
        raise click.UsageError("give a DATASET or --project")
    given = {key: value for key, value in rules.items() if value is not None}
    answer = client.set_dataset_constraints(dataset, **given) if dataset else client.set_project_dataset_constraints(project or "", **given)
    say("constraints: " + (json.dumps(answer["constraints"], sort_keys=True) if answer["constraints"] else "none"))


@datasets.command("share")
@click.argument("dataset")
@click.argument("project")
@click.option("--remove", is_flag=True, help="Stop sharing it.")
@click.pass_context
def datasets_share(ctx: click.Context, dataset: str, project: str, remove: bool) -> None:
    """(admin) Let PROJECT read DATASET and train on it, or stop with --remove."""
    client = client_of(ctx)
    answer = client.unshare_dataset(dataset, project) if remove else client.share_dataset(dataset, project)
    say("shared with: " + (", ".join(answer["shared_with"]) or "no other project"))
