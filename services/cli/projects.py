"""``trainfaas projects``: create and list projects."""
from __future__ import annotations

import click

from trainfaas.services.cli.context import client_of, list_command
from trainfaas.services.cli.output import Column, json_option, print_json, say

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


projects_list = list_command(projects, lambda client: client.list_projects(), PROJECT_COLUMNS, "The projects your token reaches.")
