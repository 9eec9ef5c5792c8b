"""``trainfaas projects``: create, list and show projects, and set their quotas."""
from __future__ import annotations

import click

from trainfaas.services.cli.context import client_of, list_command
from trainfaas.services.cli.output import Column, json_option, print_fields, print_json, say


def _usage(kind: str) -> Column:
    """``queued`` or ``running``: the count now and the limit, as ``3/100``."""
    return Column(kind, lambda p: f"{p['limits'][kind]}/{p['limits'][f'max_{kind}']}", kind="word")


PROJECT_COLUMNS = (Column("name"), Column("description"), _usage("queued"), _usage("running"), Column("created", "created_at", kind="time"))


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


@projects.command("show")
@click.argument("name")
@json_option()
@click.pass_context
def projects_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """One project with its quotas and how much of them it uses now."""
    project = client_of(ctx).get_project(name)
    if as_json:
        print_json(project)
        return
    print_fields(project, ("name", "description", "created_at"), 20)
    _print_limits(project["limits"])


def _print_limits(limits: dict[str, object]) -> None:
    lines = {f"{kind}": f"{limits[kind]} of at most {limits[f'max_{kind}']} ({limits[f'max_{kind}_source']})" for kind in ("queued", "running")}
    print_fields(lines, lines, 20)


@projects.command("limits")
@click.argument("name")
@click.option("--max-queued", type=int, help="Most executions waiting (created, pending, rerun); one more is refused (429).")
@click.option("--max-running", type=int, help="Most executions running at once; the others stay pending.")
@click.option("--default", "to_default", type=click.Choice(["max-queued", "max-running", "both"]),
              help="Put a limit back to the server's default (TRAINFAAS_PROJECT_MAX_QUEUED / _RUNNING).")
@json_option()
@click.pass_context
def projects_limits(ctx: click.Context, name: str, max_queued: int | None, max_running: int | None, to_default: str | None,
                    as_json: bool) -> None:
    """Show a project's quotas, or set them (needs an admin token)."""
    changes: dict[str, int | None] = {key: value for key, value in (("max_queued", max_queued), ("max_running", max_running))
                                      if value is not None}
    for key in ("max_queued", "max_running"):
        if to_default in (key.replace("_", "-"), "both"):
            if key in changes:
                raise click.UsageError(f"--{key.replace('_', '-')} and --default {to_default} contradict each other")
            changes[key] = None
    client = client_of(ctx)
    project = client.update_project(name, **changes) if changes else client.get_project(name)
    if as_json:
        print_json(project["limits"])
    else:
        _print_limits(project["limits"])
