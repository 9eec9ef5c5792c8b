"""``trainfaas architectures``: what the API can train, and the options an architecture's adapter declares."""
from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from trainfaas.services.cli.context import client_of
from trainfaas.services.cli.output import Column, console, json_option, print_json, print_rows

ARCHITECTURE_COLUMNS = (
    Column("architecture", kind="name"), Column("task", kind="word"), Column("service"),
    Column("parameters", lambda row: f"{row['parameters']:,}" if row["parameters"] is not None else "-", kind="word"),
    Column("size", lambda row: row["size_class"] or "-", kind="word"),
    Column("checkpoint MB", lambda row: f"{row['checkpoint_mb']:.1f}" if row["checkpoint_mb"] is not None else "-"),
    Column("adapter", lambda row: row["adapter"].rpartition(":")[2]),
)
BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))


@click.command("architectures")
@click.option("--task", help="Only this task (classification, detection, …).")
@click.option("--options", "options_of", metavar="ARCHITECTURE", help="Show the options ARCHITECTURE's adapter declares.")
@json_option()
@click.pass_context
def architectures(ctx: click.Context, task: str | None, options_of: str | None, as_json: bool) -> None:
    """The architectures trainfaas can train: task, service, parameters, size class, checkpoint MB."""
    client = client_of(ctx)
    if not options_of:
        print_rows(client.architectures(task), ARCHITECTURE_COLUMNS, as_json)
        return
    described = client.architecture(options_of)
    if as_json:
        print_json(described)
    else:
        console().print(options_table(described))


def options_table(described: dict[str, Any]) -> Table:
    """An adapter's options (a JSON Schema): name, then type, default, allowed values and meaning."""
    schema = described["options"]
    definitions = schema.get("$defs", {})
    properties = schema.get("properties", {})
    shown = Table(title=f"{described['architecture']} ({described['task']})", show_lines=True)
    # Option names are what users type: never cut or wrapped, however narrow the terminal.
    shown.add_column("option", no_wrap=True, min_width=max((len(name) for name in properties), default=6))
    shown.add_column("type, default, allowed values and meaning")
    for name, spec in properties.items():
        spec = definitions.get(spec.get("$ref", "").rpartition("/")[2], spec) if "$ref" in spec else spec
        shown.add_row(name, f"[bold]{escape(option_summary(spec))}[/bold]\n{escape(spec.get('description', ''))}")
    return shown


def option_summary(spec: dict[str, Any]) -> str:
    """``type; default D; one of …; >= N`` of one option's schema."""
    kind = spec.get("type") or " | ".join(str(part.get("type", part.get("$ref", "?").rpartition("/")[2])) for part in spec.get("anyOf", []))
    allowed = ["one of " + ", ".join(map(str, spec["enum"]))] if "enum" in spec else []
    allowed += [f"{sign} {spec[key]}" for key, sign in BOUNDS if key in spec]
    default = json.dumps(spec["default"]) if "default" in spec else "none"
    return f"{kind}; default {default}" + (f"; {' '.join(allowed)}" if allowed else "")
