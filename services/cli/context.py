"""What a command reads from the click context: the settings the root command loaded, and an SDK
client made from them."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from trainfaas.services.cli.output import Column, json_option, print_rows
from trainfaas.services.core.settings import Settings
from trainfaas.services.sdk.client import Client


def settings_of(ctx: click.Context) -> Settings:
    return ctx.find_root().obj["settings"]  # type: ignore[no-any-return]


def client_of(ctx: click.Context) -> Client:
    """The SDK with TRAINFAAS_TOKEN, else the admin token that `trainfaas up` wrote to home."""
    return Client.from_settings(settings_of(ctx))


def list_command(group: click.Group, fetch: Callable[[Client], list[dict[str, Any]]], columns: Sequence[Column],
                 doc: str) -> click.Command:
    """Add ``<group> list [--json]``: the rows ``fetch`` reads through the SDK, as a table or JSON."""
    @group.command("list", help=doc)
    @json_option()
    @click.pass_context
    def command(ctx: click.Context, as_json: bool) -> None:
        print_rows(fetch(client_of(ctx)), columns, as_json)

    return command
