"""What a command reads from the click context: the settings the root command loaded, and an SDK
client made from them."""
from __future__ import annotations

import click
from trainfaas.services.core.settings import Settings
from trainfaas.services.sdk.client import Client


def settings_of(ctx: click.Context) -> Settings:
    return ctx.find_root().obj["settings"]  # type: ignore[no-any-return]


def client_of(ctx: click.Context) -> Client:
    """The SDK with TRAINFAAS_TOKEN, else the admin token that `trainfaas up` wrote to home."""
    return Client.from_settings(settings_of(ctx))
