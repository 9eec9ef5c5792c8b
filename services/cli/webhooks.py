"""``trainfaas webhooks``: send a project's execution status changes to a URL, signed.

``add`` prints the secret it generated (when none is given) once; the API never shows it again.
See docs/webhooks.md for the events, the signature and how to verify it.
"""
from __future__ import annotations

import secrets
from typing import Any

import click

from trainfaas.services.cli.context import client_of
from trainfaas.services.cli.output import Column, json_option, print_fields, print_json, print_rows, say

WEBHOOK_COLUMNS = (
    Column("id", kind="id"), Column("url", kind="name"), Column("events", lambda w: ", ".join(w["events"]), kind="text"),
    Column("description"),
)
DELIVERY_COLUMNS = (
    Column("id", kind="id"), Column("event", kind="word"), Column("status", kind="word"), Column("tries", "attempts", kind="word"),
    Column("answer", "response_code", kind="word"), Column("created", "created_at", kind="time"),
    Column("next try", "next_try_at", kind="time"), Column("last error", "last_error"),
)
EVENT_HELP = "An event to send: execution.<status>, execution.* or *; repeat for several (default: the end states)."


@click.group()
def webhooks() -> None:
    """Send execution status changes to a URL: add, list, show, update, delete, test, deliveries."""


def _secret(secret: str | None, secret_file: Any) -> tuple[str, bool]:
    if secret and secret_file:
        raise click.UsageError("give --secret or --secret-file, not both")
    if secret_file is not None:
        return secret_file.read().strip(), False
    if secret:
        return secret, False
    return secrets.token_urlsafe(32), True


@webhooks.command("add")
@click.argument("url")
@click.option("--event", "-e", "events", multiple=True, help=EVENT_HELP)
@click.option("--secret", envvar="TRAINFAAS_WEBHOOK_SECRET", default=None,
              help="The signing secret (16 to 512 characters; also TRAINFAAS_WEBHOOK_SECRET). Default: a new random one, printed once.")
@click.option("--secret-file", type=click.File("r"), default=None, help="Read the secret from this file (- for standard input).")
@click.option("--description", default="")
@click.option("--project", default=None)
@json_option()
@click.pass_context
def webhooks_add(ctx: click.Context, url: str, events: tuple[str, ...], secret: str | None, secret_file: Any,
                 description: str, project: str | None, as_json: bool) -> None:
    """Add a webhook: the project's execution status changes are POSTed to URL, signed with the secret."""
    value, generated = _secret(secret, secret_file)
    created = client_of(ctx).create_webhook(url, value, events=list(events) or None, description=description, project=project)
    if as_json:
        print_json({**created, "secret": value} if generated else created)
        return
    say(f"webhook {created['id']} added: {', '.join(created['events'])} -> {created['url']}")
    if generated:
        say(f"secret (shown only now; verify signatures with it): {value}")


@webhooks.command("list")
@click.option("--project", default=None)
@json_option()
@click.pass_context
def webhooks_list(ctx: click.Context, project: str | None, as_json: bool) -> None:
    """The webhooks of the projects the token reaches."""
    print_rows(client_of(ctx).list_webhooks(project), WEBHOOK_COLUMNS, as_json)


@webhooks.command("show")
@click.argument("webhook_id")
@json_option()
@click.pass_context
def webhooks_show(ctx: click.Context, webhook_id: str, as_json: bool) -> None:
    """One webhook (its secret is never shown)."""
    shown = client_of(ctx).get_webhook(webhook_id)
    if as_json:
        print_json(shown)
        return
    print_fields({**shown, "events": ", ".join(shown["events"])},
                 ("id", "project", "url", "events", "description", "created_at", "updated_at"), 12)


@webhooks.command("update")
@click.argument("webhook_id")
@click.option("--url", default=None, help="A new URL.")
@click.option("--event", "-e", "events", multiple=True, help=EVENT_HELP.replace("default: the end states", "replaces the list"))
@click.option("--secret-file", type=click.File("r"), default=None, help="A new secret, read from this file (- for standard input).")
@click.option("--description", default=None)
@json_option()
@click.pass_context
def webhooks_update(ctx: click.Context, webhook_id: str, url: str | None, events: tuple[str, ...], secret_file: Any,
                    description: str | None, as_json: bool) -> None:
    """Change a webhook's URL, events, secret or description."""
    secret = secret_file.read().strip() if secret_file is not None else None
    changed = client_of(ctx).update_webhook(webhook_id, url=url, events=list(events) or None, secret=secret, description=description)
    if as_json:
        print_json(changed)
    else:
        say(f"webhook {changed['id']} updated: {', '.join(changed['events'])} -> {changed['url']}")


@webhooks.command("delete")
@click.argument("webhook_id")
@click.pass_context
def webhooks_delete(ctx: click.Context, webhook_id: str) -> None:
    """Delete a webhook; its deliveries not sent yet are never sent."""
    deleted = client_of(ctx).delete_webhook(webhook_id)
    say(f"webhook {deleted['id']} deleted")


@webhooks.command("test")
@click.argument("webhook_id")
@json_option()
@click.pass_context
def webhooks_test(ctx: click.Context, webhook_id: str, as_json: bool) -> None:
    """Send the webhook a ping (see its outcome with `trainfaas webhooks deliveries`)."""
    delivery = client_of(ctx).test_webhook(webhook_id)
    if as_json:
        print_json(delivery)
    else:
        say(f"ping {delivery['id']} queued for webhook {delivery['webhook']}: see `trainfaas webhooks deliveries {delivery['webhook']}`")


@webhooks.command("deliveries")
@click.argument("webhook_id")
@click.option("--status", type=click.Choice(["pending", "succeeded", "failed"]), default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@json_option()
@click.pass_context
def webhooks_deliveries(ctx: click.Context, webhook_id: str, status: str | None, limit: int, as_json: bool) -> None:
    """A webhook's deliveries, newest first: state, tries, last answer, next try and last error."""
    print_rows(client_of(ctx).webhook_deliveries(webhook_id, status, limit), DELIVERY_COLUMNS, as_json)
