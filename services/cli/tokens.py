"""``trainfaas tokens``: create, list and revoke API tokens."""
from __future__ import annotations

import click

from trainfaas.services.cli.context import client_of, list_command
from trainfaas.services.cli.output import Column, json_option, print_json, say

TOKEN_COLUMNS = (
    Column("id", kind="id"), Column("scope", kind="word"), Column("project", lambda t: t["project"] or "*"), Column("name"),
    Column("created", "created_at", kind="time"), Column("revoked", "revoked_at", kind="time"),
)


@click.group()
def tokens() -> None:
    """API tokens: read or write one project, or admin. Only admin tokens manage them."""


@tokens.command("create")
@click.option("--project", default=None, help="Required for read and write tokens.")
@click.option("--scope", type=click.Choice(["read", "write", "admin", "metrics"]), required=True)
@click.option("--name", default="", help="What the token is for.")
@json_option('Print {"token": ..., "id": ..., ...}.')
@click.pass_context
def tokens_create(ctx: click.Context, project: str | None, scope: str, name: str, as_json: bool) -> None:
    """Create a token and print its secret, which is shown only this once."""
    token = client_of(ctx).create_token(scope, project, name)
    if as_json:
        print_json(token)
        return
    say(f"token {token['id']} ({token['scope']}{' on ' + token['project'] if token['project'] else ''}); "
        "store the secret now, it is not shown again:")
    click.echo(token["token"])


tokens_list = list_command(tokens, lambda client: client.list_tokens(), TOKEN_COLUMNS, "Tokens without their secrets.")


@tokens.command("revoke")
@click.argument("token_id")
@click.pass_context
def tokens_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token: it answers 401 from now on."""
    client_of(ctx).revoke_token(token_id)
    say(f"token {token_id} revoked")
