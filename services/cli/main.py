"""The ``trainfaas`` command line, built on the SDK (:mod:`trainfaas.services.sdk.client`)."""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from trainfaas.services.core.settings import Settings, load_settings
from trainfaas.services.sdk.client import ApiError, Client

console = Console()
err_console = Console(stderr=True)


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]  # type: ignore[no-any-return]


def _client(ctx: click.Context) -> Client:
    """The SDK with TRAINFAAS_TOKEN, else the admin token that `trainfaas up` wrote to home."""
    return Client.from_settings(_settings(ctx))


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


class CliGroup(click.Group):
    """Turns API errors into one readable line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            sys.exit(1)


@click.group(cls=CliGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """trainfaas: serverless-style model training on your own machines."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    ctx.obj = {"settings": load_settings()}


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def info(ctx: click.Context, as_json: bool) -> None:
    """Print the effective settings: home, database URL, Redis URL, API URL."""
    data = _settings(ctx).public()
    if as_json:
        _print_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key:15} {value}")


@main.command()
@click.option("--host", default=None, help="Address the API listens on (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port of the API (default 8080).")
@click.pass_context
def up(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the local stack until Ctrl-C: Redis, the API, the scheduler and its instances."""
    from trainfaas.services.local.stack import Stack

    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = load_settings(**overrides, api_url="") if overrides else _settings(ctx)
    logging.getLogger().setLevel(logging.INFO)
    stack = Stack(settings).start()
    console.print(f"trainfaas is up: API {settings.api_url}, home {settings.home}. Ctrl-C stops it.")
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            console.print("stopping now; running executions will be rerun on the next start")
            if stack.scheduler is not None:
                for backend in stack.scheduler.backends.values():
                    backend.close(0)
            return
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stopping.wait()
    console.print("stopping: draining running executions (Ctrl-C again to stop now)…")
    stack.stop(drain_timeout_s=60.0)
    console.print("stopped")


@main.command()
@click.option("--service", required=True, help="The service to serve, e.g. mgmt-train-resnet18.")
@click.option("--instance-id", default=None, help="Adopt this pre-registered instance id (set by the scheduler).")
@click.option("--concurrency", default=None, type=int, help="Executions at once (default: the service's).")
@click.option("--backend", default="process", show_default=True, envvar="TRAINFAAS_INSTANCE_BACKEND",
              help="Backend that runs this instance (process, docker, swarm); reported when it registers.")
@click.pass_context
def instance(ctx: click.Context, service: str, instance_id: str | None, concurrency: int | None, backend: str) -> None:
    """Run one instance of a service: pull its queue and run executions in work processes."""
    from trainfaas.services.worker.instance import main as run_instance

    logging.getLogger().setLevel(logging.INFO)
    run_instance(_settings(ctx), service, instance_id, concurrency, backend)


@main.command("scheduler")
@click.pass_context
def scheduler_cmd(ctx: click.Context) -> None:
    """Run the scheduler alone (fleet, reaper, reconciler) until Ctrl-C."""
    from trainfaas.scheduler.backends import create_all
    from trainfaas.scheduler.daemon import Scheduler
    from trainfaas.services.store.database import open_database
    from trainfaas.services.store.migrations import migrate

    settings = _settings(ctx)
    logging.getLogger().setLevel(logging.INFO)
    open_database(settings.database_url)
    migrate()
    default, *extra = create_all(settings)
    daemon = Scheduler(settings, default, extra_backends=extra)
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    daemon.start()
    stopping.wait()
    daemon.shutdown(60.0)


def follow(client: Client, execution_id: str) -> dict[str, Any]:
    """Show a progress bar until the execution ends; return its final state."""
    with Progress(TextColumn("[bold]{task.fields[status]:<12}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TimeElapsedColumn(), TextColumn("{task.fields[message]}"), console=console) as progress:
        task = progress.add_task("train", total=100, status="pending", message="")

        def update(execution: dict[str, Any]) -> None:
            label = execution["status"] + (f" #{execution['attempt']}" if execution["attempt"] > 1 else "")
            progress.update(task, completed=execution["progress"], status=label, message=execution["message"][:60])

        return client.wait(execution_id, on_update=update)


def _parse_config(pairs: tuple[str, ...]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} must look like key=value", param_hint="--config")
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            config[key] = raw
    return config


@main.command()
@click.option("--architecture", "-a", required=True, help="e.g. resnet18, mobilenet_v3_small, sleep.")
@click.option("--dataset", "-d", default=None, help="Data set directory, or a name under $TRAINFAAS_HOME/datasets.")
@click.option("--name", default=None, help="Model name (default: <architecture>-<dataset>).")
@click.option("--epochs", type=int, default=None, help="Shortcut for --config epochs=N.")
@click.option("--config", "-c", "config_pairs", multiple=True, help="Adapter option as key=value (repeatable).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Execution timeout in seconds.")
@click.option("--max-attempts", type=int, default=None)
@click.option("--on-reset", type=click.Choice(["rerun", "fail"]), default=None)
@click.option("--from-model", default=None, metavar="MODEL_ID",
              help="Fine-tune: start from this trained model's weights, labels and configuration.")
@click.option("--follow/--no-follow", default=False, help="Show progress until it ends.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def train(ctx: click.Context, architecture: str, dataset: str | None, name: str | None, epochs: int | None,
          config_pairs: tuple[str, ...], timeout_s: float | None, max_attempts: int | None, on_reset: str | None,
          from_model: str | None, follow: bool, as_json: bool) -> None:
    """Create a model and enqueue its training."""
    client = _client(ctx)
    configuration = _parse_config(config_pairs)
    if epochs is not None:
        configuration["epochs"] = epochs
    execution_settings = {k: v for k, v in (("timeout_s", timeout_s), ("max_attempts", max_attempts), ("on_reset", on_reset)) if v is not None}
    # The configuration goes with the model so that a bad option is rejected before anything exists.
    model = client.create_model(name or f"{architecture}-{Path(dataset).name if dataset else 'model'}", architecture,
                                configuration=configuration or None, from_model=from_model)
    execution = client.train(model["id"], dataset, None, execution_settings or None)
    if not follow:
        _print_json(execution) if as_json else console.print(f"execution {execution['id']} {execution['status']} on {execution['service']}")
        return
    final = follow_and_report(client, execution["id"], model["id"])
    if as_json:
        _print_json(final)
    sys.exit(0 if final["status"] == "success" else 1)


def follow_and_report(client: Client, execution_id: str, model_id: str | None) -> dict[str, Any]:
    final = follow(client, execution_id)
    colour = "green" if final["status"] == "success" else "red"
    console.print(f"execution {execution_id}: [{colour}]{final['status']}[/{colour}] after {final['duration_s']} s, attempt {final['attempt']}")
    if final.get("error"):
        console.print(f"[red]{final['error']}[/red]")
    if model_id and final["status"] == "success":
        metrics = client.get_model(model_id)["metrics"]
        table = Table("metric", "value", title="final validation metrics")
        for key, value in sorted(metrics.items()):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
        console.print(table)
    return final


@main.group()
def executions() -> None:
    """List, inspect, stop and rerun executions."""


@executions.command("list")
@click.option("--status", default=None, help="One status or several, comma-separated.")
@click.option("--service", default=None)
@click.option("--model", default=None, help="Model id.")
@click.option("--project", default=None)
@click.option("-q", "query", default=None, help="Name or id.")
@click.option("--limit", default=50, type=int)
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON: {items, next_cursor}.")
@click.pass_context
def executions_list(ctx: click.Context, status: str | None, service: str | None, model: str | None, project: str | None,
                    query: str | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """Executions, newest first."""
    page = _client(ctx).page("/api/v1/executions", status=status, service=service, model=model, project=project,
                             q=query, limit=limit, cursor=cursor)
    if as_json:
        _print_json(page)
        return
    table = Table("id", "project", "name", "service", "status", "progress", "attempt", "created")
    for e in page["items"]:
        table.add_row(e["id"], e["project"], e["name"], e["service"], e["status"], f"{e['progress']:.0f}%",
                      f"{e['attempt']}/{e['max_attempts']}", e["created_at"])
    console.print(table)
    _more(page)


def _more(page: dict[str, Any]) -> None:
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}")


@main.group()
def models() -> None:
    """List and inspect models."""


@models.command("list")
@click.option("--architecture", default=None)
@click.option("--status", default=None)
@click.option("--project", default=None)
@click.option("-q", "query", default=None, help="Name or id.")
@click.option("--limit", default=50, type=int)
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON: {items, next_cursor}.")
@click.pass_context
def models_list(ctx: click.Context, architecture: str | None, status: str | None, project: str | None, query: str | None,
                limit: int, cursor: str | None, as_json: bool) -> None:
    """Models, newest first."""
    page = _client(ctx).page("/api/v1/models", architecture=architecture, status=status, project=project, q=query,
                             limit=limit, cursor=cursor)
    if as_json:
        _print_json(page)
        return
    table = Table("id", "project", "name", "architecture", "status", "created")
    for m in page["items"]:
        table.add_row(m["id"], m["project"], m["name"], m["architecture"], m["status"], m["created_at"])
    console.print(table)
    _more(page)


@models.command("show")
@click.argument("model_id")
@click.pass_context
def models_show(ctx: click.Context, model_id: str) -> None:
    """One model as JSON."""
    _print_json(_client(ctx).get_model(model_id))


@main.group()
def projects() -> None:
    """Projects group models and executions; tokens are scoped to one."""


@projects.command("create")
@click.argument("name")
@click.option("--description", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def projects_create(ctx: click.Context, name: str, description: str, as_json: bool) -> None:
    """Create a project (needs an admin token)."""
    project = _client(ctx).create_project(name, description)
    _print_json(project) if as_json else console.print(f"project {project['name']} created")


@projects.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def projects_list(ctx: click.Context, as_json: bool) -> None:
    """The projects your token reaches."""
    items = _client(ctx).list_projects()
    if as_json:
        _print_json(items)
        return
    table = Table("name", "description", "created")
    for p in items:
        table.add_row(p["name"], p["description"], p["created_at"])
    console.print(table)


@main.group()
def tokens() -> None:
    """API tokens: read or write one project, or admin. Only admin tokens manage them."""


@tokens.command("create")
@click.option("--project", default=None, help="Required for read and write tokens.")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), required=True)
@click.option("--name", default="", help="What the token is for.")
@click.option("--json", "as_json", is_flag=True, help='Print {"token": ..., "id": ..., ...}.')
@click.pass_context
def tokens_create(ctx: click.Context, project: str | None, scope: str, name: str, as_json: bool) -> None:
    """Create a token and print its secret, which is shown only this once."""
    token = _client(ctx).create_token(scope, project, name)
    if as_json:
        _print_json(token)
        return
    console.print(f"token {token['id']} ({token['scope']}{' on ' + token['project'] if token['project'] else ''}); "
                  "store the secret now, it is not shown again:")
    click.echo(token["token"])


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tokens_list(ctx: click.Context, as_json: bool) -> None:
    """Tokens without their secrets."""
    items = _client(ctx).list_tokens()
    if as_json:
        _print_json(items)
        return
    table = Table("id", "scope", "project", "name", "created", "revoked")
    for t in items:
        table.add_row(t["id"], t["scope"], t["project"] or "*", t["name"], t["created_at"], t["revoked_at"] or "")
    console.print(table)


@tokens.command("revoke")
@click.argument("token_id")
@click.pass_context
def tokens_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token: it answers 401 from now on."""
    _client(ctx).revoke_token(token_id)
    console.print(f"token {token_id} revoked")


@executions.command("show")
@click.argument("execution_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--follow", is_flag=True, help="Show progress until it ends.")
@click.pass_context
def executions_show(ctx: click.Context, execution_id: str, as_json: bool, follow: bool) -> None:
    client = _client(ctx)
    if follow:
        follow_and_report(client, execution_id, client.get_execution(execution_id)["model_id"])
    e = client.get_execution(execution_id)
    if as_json:
        _print_json(e)
        return
    for key in ("id", "name", "service", "status", "progress", "message", "attempt", "max_attempts", "timeout_s",
                "drain_time_s", "on_reset", "created_at", "started_at", "finished_at", "duration_s", "error"):
        console.print(f"[bold]{key:14}[/bold] {e[key]}")
    table = Table("time", "status", "attempt", "message", title="status log")
    for row in e["status_log"]:
        table.add_row(row["at"], row["status"], str(row["attempt"]), row["message"])
    console.print(table)
    table = Table("attempt", "instance", "started", "ended", "outcome", "reason", title="attempts")
    for row in e["attempts"]:
        table.add_row(str(row["number"]), row["instance"] or "", row["started_at"] or "", row["ended_at"] or "", row["outcome"] or "", row["reason"] or "")
    console.print(table)


@executions.command("logs")
@click.argument("execution_id")
@click.pass_context
def executions_logs(ctx: click.Context, execution_id: str) -> None:
    for line in _client(ctx).logs(execution_id):
        click.echo(f"{line['at']} [{line['attempt']}] {line['line']}")


@executions.command("terminate")
@click.argument("execution_id")
@click.pass_context
def executions_terminate(ctx: click.Context, execution_id: str) -> None:
    e = _client(ctx).terminate(execution_id)
    console.print(f"execution {execution_id}: {e['status']}" + (" (stop requested)" if e["status"] == "in-progress" else ""))


@executions.command("rerun")
@click.argument("execution_id")
@click.pass_context
def executions_rerun(ctx: click.Context, execution_id: str) -> None:
    e = _client(ctx).rerun(execution_id)
    console.print(f"execution {execution_id}: {e['status']} as attempt {e['attempt']}")


@main.group()
def services() -> None:
    """List, inspect and configure services."""


@services.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def services_list(ctx: click.Context, as_json: bool) -> None:
    items = _client(ctx).list_services()
    if as_json:
        _print_json(items)
        return
    table = Table("name", "health", "scaling", "min", "max", "instances", "queue", "pending", "running", "paused")
    for s in items:
        table.add_row(s["name"], s["health"], s["scaling_type"], str(s["min_instances"]), str(s["max_instances"]), str(s["instances"]),
                      str(s["queue"]), str(s["pending"]), str(s["running"]), str(s["paused"]))
    console.print(table)


@services.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def services_show(ctx: click.Context, name: str, as_json: bool) -> None:
    client = _client(ctx)
    service, instances = client.get_service(name), client.instances(name)
    if as_json:
        _print_json({**service, "instance_list": instances})
        return
    colour = {"ok": "green", "warning": "yellow", "error": "red"}[service["health"]]
    console.print(f"[bold]{'health':20}[/bold] [{colour}]{service['health']}[/{colour}] {service['health_reason']}")
    for key, value in service.items():
        if key not in ("health", "health_reason"):
            console.print(f"[bold]{key:20}[/bold] {value}")
    table = Table("instance", "status", "host", "pid", "heartbeat", "restarts", "last exit", title="instances")
    for i in instances:
        table.add_row(i["id"], i["status"], i["host"], str(i["pid"]), i["heartbeat"] or "", str(i["restart_count"]), i["last_exit_reason"] or "")
    console.print(table)


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
    service = _client(ctx).update_service(name, **changes)
    console.print(", ".join(f"{k}={service[k]}" for k in changes))


@services.command("pause")
@click.argument("name")
@click.pass_context
def services_pause(ctx: click.Context, name: str) -> None:
    """No new executions start; queued ones stay pending; instances drain away."""
    service = _client(ctx).pause_service(name)
    console.print(f"{name} paused: {service['pending']} pending, {service['running']} running")


@services.command("resume")
@click.argument("name")
@click.pass_context
def services_resume(ctx: click.Context, name: str) -> None:
    service = _client(ctx).resume_service(name)
    console.print(f"{name} resumed: {service['pending']} pending")


@services.command("events")
@click.argument("name")
@click.option("--limit", default=30, type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def services_events(ctx: click.Context, name: str, limit: int, as_json: bool) -> None:
    """Why the autoscaler did what it did: each decision with what it saw."""
    items = _client(ctx).service_events(name, limit)
    if as_json:
        _print_json(items)
        return
    table = Table("time", "queued", "running", "instances", "desired", "action", "reason")
    for e in items:
        table.add_row(e["at"], str(e["queued"]), str(e["running"]), str(e["instances"]), str(e["desired"]), e["action"], e["reason"])
    console.print(table)


@main.group()
def datasets() -> None:
    """Bundled sample data sets."""


@datasets.command("sample")
@click.argument("name", type=click.Choice(["digits", "shapes", "text", "ner"]))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def datasets_sample(name: str, directory: Path) -> None:
    """Write a bundled sample data set into DIRECTORY: digits (image folder), shapes (YOLO
    detection/instance segmentation and image+mask semantic segmentation), text (CSV text
    classification) or ner (CoNLL token classification)."""
    from trainfaas.adapters.datasets import sample_writer

    summary = sample_writer(name)(directory)
    console.print(f"wrote {name} to {directory}: {summary}")


@main.group()
def adapters() -> None:
    """Model adapters and the architectures they serve."""


@adapters.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def adapters_list(ctx: click.Context, as_json: bool) -> None:
    from trainfaas.adapters.catalog import catalog

    entries = catalog(_settings(ctx).adapters)
    rows = [{"architecture": e.architecture, "task": e.task, "adapter": e.adapter, "source": e.source,
             "service": f"mgmt-train-{e.architecture}"} for e in sorted(entries.values(), key=lambda e: (e.task, e.architecture))]
    if as_json:
        _print_json(rows)
        return
    table = Table("architecture", "task", "service", "adapter", "source")
    for row in rows:
        table.add_row(row["architecture"], row["task"], row["service"], row["adapter"], row["source"])
    console.print(table)


@main.command("architectures")
@click.option("--task", help="Only this task (classification, detection, …).")
@click.option("--options", "options_of", metavar="ARCHITECTURE", help="Show the options ARCHITECTURE's adapter declares.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def architectures_command(ctx: click.Context, task: str | None, options_of: str | None, as_json: bool) -> None:
    """The architectures trainfaas can train: task, service, parameters, size class, checkpoint MB."""
    client = _client(ctx)
    if options_of:
        described = client.architecture(options_of)
        if as_json:
            _print_json(described)
            return
        _print_options(described)
        return
    rows = client.architectures(task)
    if as_json:
        _print_json(rows)
        return
    table = Table()
    table.add_column("architecture", no_wrap=True, min_width=max((len(row["architecture"]) for row in rows), default=12))
    for column in ("task", "service", "parameters", "size", "checkpoint MB", "adapter"):
        table.add_column(column)
    for row in rows:
        parameters = f"{row['parameters']:,}" if row["parameters"] is not None else "-"
        megabytes = f"{row['checkpoint_mb']:.1f}" if row["checkpoint_mb"] is not None else "-"
        table.add_row(row["architecture"], row["task"], row["service"], parameters, row["size_class"] or "-", megabytes,
                      row["adapter"].rpartition(":")[2])
    console.print(table)


def _print_options(described: dict[str, Any]) -> None:
    schema = described["options"]
    definitions = schema.get("$defs", {})
    properties = schema.get("properties", {})
    table = Table(title=f"{described['architecture']} ({described['task']})", show_lines=True)
    # Option names are what users type: never cut or wrapped, however narrow the terminal.
    table.add_column("option", no_wrap=True, min_width=max((len(name) for name in properties), default=6))
    table.add_column("type, default, allowed values and meaning")
    for name, spec in properties.items():
        spec = definitions.get(spec.get("$ref", "").rpartition("/")[2], spec) if "$ref" in spec else spec
        kind = spec.get("type") or " | ".join(str(part.get("type", part.get("$ref", "?").rpartition("/")[2])) for part in spec.get("anyOf", []))
        allowed = []
        if "enum" in spec:
            allowed.append("one of " + ", ".join(map(str, spec["enum"])))
        for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
            if key in spec:
                allowed.append(f"{sign} {spec[key]}")
        default = json.dumps(spec["default"]) if "default" in spec else "none"
        summary = escape(f"{kind}; default {default}" + (f"; {' '.join(allowed)}" if allowed else ""))
        table.add_row(name, f"[bold]{summary}[/bold]\n{escape(spec.get('description', ''))}")
    console.print(table)


@main.command()
@click.option("--architecture", default="resnet18")
@click.pass_context
def demo(ctx: click.Context, architecture: str) -> None:
    """Start the stack, train an image classifier on the digits data set, print its metrics, stop."""
    from trainfaas.adapters.datasets import write_digits
    from trainfaas.services.local.stack import Stack

    settings = _settings(ctx)
    dataset = settings.dataset_roots[0] / "digits"  # the API accepts data sets inside its data roots only
    console.print(f"writing the digits data set to {dataset}")
    write_digits(dataset)
    console.print(f"starting the local stack in {settings.home} (API {settings.api_url})")
    with Stack(settings) as stack:
        client = stack.admin_client()
        model = client.create_model(f"digits-{architecture}", architecture)
        execution = client.train(model["id"], dataset=str(dataset))
        console.print(f"training {architecture} on digits: execution {execution['id']} on {execution['service']}")
        final = follow_and_report(client, execution["id"], model["id"])
    sys.exit(0 if final["status"] == "success" else 1)


if __name__ == "__main__":
    main()
