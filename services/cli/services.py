"""``trainfaas services``: list, inspect, configure, pause and resume services, and read why the
autoscaler did what it did."""
from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from trainfaas.services.cli.context import client_of, list_command
from trainfaas.services.cli.output import Column, console, json_option, print_fields, print_json, print_rows, print_table, printable, say

SERVICE_COLUMNS = (
    Column("name"), Column("health", kind="word"), Column("scaling", "scaling_type", kind="word"),
    Column("instances", lambda s: f"{s['instances']} ({s['min_instances']}-{s['max_instances']})", kind="word"),
    *(Column(header, kind="word") for header in ("queue", "pending", "running", "paused")),
)
INSTANCE_COLUMNS = (
    Column("instance", "id", kind="id"), Column("status", kind="word"), Column("host"), Column("pid", kind="word"),
    Column("heartbeat", kind="time"), Column("restarts", "restart_count", kind="word"), Column("last exit", "last_exit_reason"),
)
EVENT_COLUMNS = (
    Column("time", "at", kind="time"), *(Column(header, kind="word") for header in ("queued", "running", "instances", "desired")),
    Column("action", kind="word"), Column("reason"),
)
HEALTH_COLOURS = {"ok": "green", "warning": "yellow", "error": "red"}


@click.group()
def services() -> None:
    """List, inspect and configure services."""


services_list = list_command(services, lambda client: client.list_services(), SERVICE_COLUMNS, "Every service with its health, scaling and queue.")


@services.command("show")
@click.argument("name")
@json_option()
@click.pass_context
def services_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """One service: its settings, its health and its instances."""
    client = client_of(ctx)
    service, instances = client.get_service(name), client.instances(name)
    if as_json:
        print_json({**service, "instance_list": instances})
        return
    colour = HEALTH_COLOURS[service["health"]]
    console().print(f"[bold]{'health':20}[/bold] [{colour}]{service['health']}[/{colour}] {escape(printable(service['health_reason']))}")
    print_fields(service, [key for key in service if key not in ("health", "health_reason", "warnings")], 20)
    print_table(INSTANCE_COLUMNS, instances, "instances")


@services.command("set")
@click.argument("name")
@click.option("--min", "min_instances", type=int)
@click.option("--max", "max_instances", type=int)
@click.option("--queue-length", type=int)
@click.option("--polling-interval", "polling_interval_s", type=float)
@click.option("--cooldown", "cooldown_s", type=float)
@click.option("--concurrency", type=int)
@click.option("--instance-type")
@click.option("--scaling-type", type=click.Choice(["fixed", "autoscale"]))
@click.option("--backend", type=click.Choice(["process", "docker", "swarm"]))
@click.option("--timeout", "timeout_s", type=float)
@click.option("--drain-time", "drain_time_s", type=float)
@click.option("--on-reset", type=click.Choice(["rerun", "fail"]))
@click.option("--max-attempts", type=int)
@click.pass_context
def services_set(ctx: click.Context, name: str, **changes: Any) -> None:
    """Change a service's settings; the scheduler applies them within the service's polling interval."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise click.UsageError("nothing to set: give at least one option (see --help)")
    service = client_of(ctx).update_service(name, **changes)
    say(", ".join(f"{k}={service[k]}" for k in changes))
    say(f"{name} {service['scaling']}")
    for warning in service.get("warnings", []):
        click.secho(f"warning: {warning}", fg="yellow", err=True)


def _pause_or_resume(verb: str, doc: str) -> click.Command:
    """``services pause`` and ``services resume``: the same command but for the call it makes."""
    @services.command(verb, help=doc)
    @click.argument("name")
    @click.pass_context
    def command(ctx: click.Context, name: str) -> None:
        client = client_of(ctx)
        service = client.pause_service(name) if verb == "pause" else client.resume_service(name)
        running = f", {service['running']} running" if verb == "pause" else ""
        say(f"{name} {verb}d: {service['pending']} pending{running}")

    return command


services_pause = _pause_or_resume("pause", "No new executions start; queued ones stay pending; instances drain away.")
services_resume = _pause_or_resume("resume", "Start executions again after a pause.")


@services.command("events")
@click.argument("name")
@click.option("--limit", default=30, type=int)
@json_option()
@click.pass_context
def services_events(ctx: click.Context, name: str, limit: int, as_json: bool) -> None:
    """Why the autoscaler did what it did: each decision with what it saw."""
    print_rows(client_of(ctx).service_events(name, limit), EVENT_COLUMNS, as_json)
