"""``trainfaas blueprints``: save, list, show and delete named training configurations.

A blueprint holds an architecture, adapter options, execution settings and optionally a data
set; ``trainfaas train --blueprint NAME`` starts from one. ``quick`` and ``full`` are built in.
"""
from __future__ import annotations

import json
from typing import Any

import click

from trainfaas.services.cli.context import client_of
from trainfaas.services.cli.output import Column, json_option, print_fields, print_json, print_table, say

BLUEPRINT_COLUMNS = (
    Column("name", kind="name"), Column("architecture", lambda b: b["architecture"] or "any", kind="name"),
    Column("dataset"), Column("description"),
)
OPTION_COLUMNS = (
    Column("option", "name", kind="name"), Column("type", lambda o: o["type"] if isinstance(o["type"], str) else "|".join(o["type"]), kind="word"),
    Column("default", lambda o: json.dumps(o["default"]), kind="word"), Column("range", lambda o: _range(o), kind="word"),
    Column("meaning", "description"),
)


def _range(option: dict[str, Any]) -> str:
    if option.get("choices"):
        return ", ".join(map(str, option["choices"]))
    low, high = option.get("minimum"), option.get("maximum")
    if low is None and high is None:
        return ""
    return f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"


@click.group()
def blueprints() -> None:
    """Named training configurations: save, list, show, delete; train from one with `trainfaas train --blueprint`."""


@blueprints.command("save")
@click.argument("name")
@click.option("--from-execution", default=None, metavar="ID", help="Save what this training ran with.")
@click.option("--file", "config_file", type=click.File("r"), default=None,
              help="Save this configuration (as `trainfaas executions config` prints it; - for standard input).")
@click.option("--description", default="")
@click.option("--project", default=None)
@click.option("--replace", is_flag=True, help="Replace a saved blueprint of the same name.")
@json_option()
@click.pass_context
def blueprints_save(ctx: click.Context, name: str, from_execution: str | None, config_file: Any, description: str,
                    project: str | None, replace: bool, as_json: bool) -> None:
    """Save a blueprint from a training or from a configuration file."""
    if (from_execution is None) == (config_file is None):
        raise click.UsageError("give --from-execution ID or --file FILE")
    config = None
    if config_file is not None:
        try:
            config = json.load(config_file)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--file") from None
    saved = client_of(ctx).save_blueprint(name, from_execution=from_execution, config=config, description=description,
                                         project=project, replace=replace)
    if as_json:
        print_json(saved)
    else:
        say(f"blueprint {saved['name']} saved ({saved['architecture']})")


@blueprints.command("list")
@click.option("--project", default=None)
@json_option()
@click.pass_context
def blueprints_list(ctx: click.Context, project: str | None, as_json: bool) -> None:
    """The project's blueprints: the built-in quick and full, then the saved ones."""
    rows = client_of(ctx).list_blueprints(project)
    if as_json:
        print_json(rows)
    else:
        print_table(BLUEPRINT_COLUMNS, rows)


@blueprints.command("show")
@click.argument("name")
@click.option("--architecture", "-a", default=None, help="For quick and full (full needs it).")
@click.option("--project", default=None)
@json_option()
@click.pass_context
def blueprints_show(ctx: click.Context, name: str, architecture: str | None, project: str | None, as_json: bool) -> None:
    """One blueprint; ``full -a ARCH`` lists every option with its default, type, range and meaning."""
    shown = client_of(ctx).get_blueprint(name, architecture, project)
    if as_json:
        print_json(shown)
        return
    print_fields(shown, ("name", "description", "architecture", "dataset", "source_execution", "created_at"), 17)
    if shown.get("options"):
        print_table(OPTION_COLUMNS, shown["options"], "options")
    else:
        click.echo("configuration    " + json.dumps(shown["configuration"], sort_keys=True))
    click.echo("execution        " + json.dumps(shown["execution"], sort_keys=True))


@blueprints.command("delete")
@click.argument("name")
@click.option("--project", default=None)
@click.pass_context
def blueprints_delete(ctx: click.Context, name: str, project: str | None) -> None:
    """Delete a saved blueprint (trainings that used it keep what they ran with)."""
    client_of(ctx).delete_blueprint(name, project)
    say(f"blueprint {name} deleted")
