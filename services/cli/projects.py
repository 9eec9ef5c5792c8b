"""``trainfaas projects``: create and list projects."""
from __future__ import annotations

import click
from trainfaas.services.cli.context import client_of
from trainfaas.services.cli.output import Column, json_option, print_json, print_rows, say

PROJECT_COLUMNS = (Column("name"), Column("description"), Column("created", "created_at", kind="time"))


@click.group()
def projects() -> None:
    """Projects group models and executions; tokens are scoped to one."""


@projects.command("create")
@click.argument("name")
@click.option("--description", default="")
@json_option()
@click.pass_context
def projects_create(ctx: click.Context, name: str, description: str, as_json: bool) -> None:
    """Create a project (needs an admin token)."""
    project = client_of(ctx).create_project(name, description)
    if as_json:
        print_json(project)
    else:
        say(f"project {project['name']} created")


@projects.command("list")
@json_option()
@click.pass_context
def projects_list(ctx: click.Context, as_json: bool) -> None:
    """The projects your token reaches."""
    print_rows(client_of(ctx).list_projects(), PROJECT_COLUMNS, as_json)
