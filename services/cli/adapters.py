"""``trainfaas adapters list``: which adapter serves which architecture in this installation.

It reads the adapter catalog of this machine rather than the API, so the root group imports this
module only when the command runs (see group.py).
"""
from __future__ import annotations

import click

from trainfaas.adapters.catalog import catalog
from trainfaas.services.cli.context import settings_of
from trainfaas.services.cli.output import Column, json_option, print_rows

ADAPTER_COLUMNS = (
    Column("architecture", kind="name"), Column("task", kind="word"), Column("service"), Column("adapter"), Column("source", kind="word"),
)


@click.group()
def adapters() -> None:
    """Model adapters and the architectures they serve."""


@adapters.command("list")
@json_option()
@click.pass_context
def adapters_list(ctx: click.Context, as_json: bool) -> None:
    """Which adapter serves each architecture, and where it comes from (built in, entry point, setting)."""
    entries = sorted(catalog(settings_of(ctx).adapters).values(), key=lambda e: (e.task, e.architecture))
    rows = [{"architecture": e.architecture, "task": e.task, "adapter": e.adapter, "source": e.source,
             "service": f"mgmt-train-{e.architecture}"} for e in entries]
    print_rows(rows, ADAPTER_COLUMNS, as_json)
