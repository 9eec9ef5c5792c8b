"""``trainfaas ui``: where the web UI is, and opening it."""
from __future__ import annotations

import webbrowser

import click

from trainfaas.services.cli.context import settings_of
from trainfaas.services.sdk.client import Client


@click.command("ui")
@click.argument("page", required=False, default="")
@click.option("--open", "open_it", is_flag=True, help="Open it in the default browser.")
@click.pass_context
def ui(ctx: click.Context, page: str, open_it: bool) -> None:
    """Print the address of the web UI, or of one of its pages (executions/ID, compare?executions=A,B,
    train, models, services); sign in there with a token."""
    address = Client(settings_of(ctx).api_url).ui_url(page)
    click.echo(address)
    if open_it:
        webbrowser.open(address)
