"""``trainfaas executions``: submit, list, show, follow, read the logs and configuration of, compare, terminate and rerun executions.

An execution id may be given whole or as the short id a table shows; the API resolves it.
"""
from __future__ import annotations

import json

import click

from trainfaas.services.cli.context import client_of
from trainfaas.services.cli.models import parse_config
from trainfaas.services.cli.output import (
    Column,
    Json,
    json_option,
    page_options,
    print_fields,
    print_json,
    print_page,
    print_table,
    printable,
    say,
    short_id,
)
from trainfaas.services.cli.progress import follow_and_report
from trainfaas.services.cli.waiting import usage_words, waiting_line


def state(execution: Json) -> str:
    """The status, with the progress while it runs and the attempt after the first: ``in-progress 45% (attempt 2/3)``."""
    progress = f" {execution['progress']:.0f}%" if execution["status"] == "in-progress" else ""
    attempt = f" (attempt {execution['attempt']}/{execution['max_attempts']})" if execution["attempt"] > 1 else ""
    return f"{execution['status']}{progress}{attempt}"


EXECUTION_COLUMNS = (
    Column("id", kind="id"), Column("project"), Column("name"), Column("service"), Column("status", state),
    Column("created", "created_at", kind="time"),
)
EXECUTION_FIELDS = ("id", "name", "service", "status", "progress", "message", "attempt", "max_attempts", "timeout_s",
                    "drain_time_s", "on_reset", "created_at", "started_at", "finished_at", "duration_s", "error")
STATUS_LOG_COLUMNS = (Column("time", "at", kind="time"), Column("status", kind="word"), Column("attempt", kind="word"), Column("message"))
ATTEMPT_COLUMNS = (
    Column("attempt", "number", kind="word"), Column("instance", kind="id"), Column("started", "started_at", kind="time"),
    Column("ended", "ended_at", kind="time"), Column("outcome", kind="word"), Column("used", usage_words), Column("reason"),
)


@click.group()
def executions() -> None:
    """List, inspect, stop and rerun executions."""


@executions.command("list")
@click.option("--status", default=None, help="One status or several, comma-separated.")
@click.option("--service", default=None)
@click.option("--model", default=None, help="Model id.")
@click.option("--project", default=None)
@click.option("--include-removed", is_flag=True, help="Also the executions removed from training.")
@page_options
@click.pass_context
def executions_list(ctx: click.Context, status: str | None, service: str | None, model: str | None, project: str | None,
                    include_removed: bool, query: str | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """Executions, newest first (not those removed from training, unless --include-removed)."""
    page = client_of(ctx).page("/api/v1/executions", status=status, service=service, model=model, project=project,
                               include_removed="true" if include_removed else None, q=query, limit=limit, cursor=cursor)
    print_page(page, EXECUTION_COLUMNS, as_json)


@executions.command("show")
@click.argument("execution_id")
@json_option()
@click.option("--follow", is_flag=True, help="Show progress until it ends.")
@click.pass_context
def executions_show(ctx: click.Context, execution_id: str, as_json: bool, follow: bool) -> None:
    """One execution: its state, its status log and its attempts."""
    client = client_of(ctx)
    if follow:
        follow_and_report(client, execution_id, client.get_execution(execution_id)["model_id"])
    execution = client.get_execution(execution_id)
    if as_json:
        print_json(execution)
        return
    print_fields(execution, EXECUTION_FIELDS, 14)
    if execution.get("waiting"):
        say(waiting_line(execution["waiting"]))
        say(f"  {execution['waiting']['reason']}; estimate: {execution['waiting']['estimate_reason']}")
    for subset, version in sorted(((execution.get("input") or {}).get("dataset_versions") or {}).items()):
        where = "" if subset == "all" else f" ({subset})"
        click.echo(printable(f"{'data set' + where:<14} {version['reference']} digest {version['digest']} (data set {version['dataset_id']})"))
    print_table(STATUS_LOG_COLUMNS, execution["status_log"], "status log")
    print_table(ATTEMPT_COLUMNS, execution["attempts"], "attempts")


@executions.command("logs")
@click.argument("execution_id")
@click.pass_context
def executions_logs(ctx: click.Context, execution_id: str) -> None:
    """The execution's log lines, every attempt, oldest first."""
    for line in client_of(ctx).logs(execution_id):
        click.echo(printable(f"{line['at']} [{line['attempt']}] {line['line']}"))


@executions.command("terminate")
@click.argument("execution_id")
@click.pass_context
def executions_terminate(ctx: click.Context, execution_id: str) -> None:
    """Stop an execution: a queued one ends at once, a running one is asked to stop."""
    execution = client_of(ctx).terminate(execution_id)
    stopping = " (stop requested)" if execution["status"] == "in-progress" else ""
    say(f"execution {execution_id}: {execution['status']}{stopping}")


@executions.command("rerun")
@click.argument("execution_id")
@click.option("--config", "-c", "config_pairs", multiple=True, help="Adapter option as key=value, over the training's (repeatable).")
@click.option("--resume", type=click.Choice(["last", "best", "none"]), default=None,
              help="Checkpoint to continue from (default: an interrupted attempt's, nothing after a success).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Execution timeout in seconds.")
@click.option("--max-attempts", type=int, default=None, help="Attempts in all, this one included.")
@click.option("--on-reset", type=click.Choice(["rerun", "fail"]), default=None)
@click.option("--keep-checkpoints", type=int, default=None, help="Checkpoints kept besides the best, newest first (1-1000).")
@click.option("--instance-type", default=None, help="Run on the architecture's service of this instance type (created as needed).")
@click.pass_context
def executions_rerun(ctx: click.Context, execution_id: str, config_pairs: tuple[str, ...], resume: str | None,
                     timeout_s: float | None, max_attempts: int | None, on_reset: str | None, keep_checkpoints: int | None,
                     instance_type: str | None) -> None:
    """Queue an ended execution again as its next attempt, with changes if given: train longer from
    the best checkpoint at a lower rate is `rerun ID --resume best -c epochs=20 -c learning_rate=0.002`."""
    given = (("timeout_s", timeout_s), ("max_attempts", max_attempts), ("on_reset", on_reset), ("keep_checkpoints", keep_checkpoints))
    flags = {k: v for k, v in given if v is not None}
    execution = client_of(ctx).rerun(execution_id, configuration=parse_config(config_pairs) or None,
                                     execution=flags or None, resume=resume, instance_type=instance_type)
    say(f"execution {execution_id}: {execution['status']} as attempt {execution['attempt']} on {execution['service']}")


@executions.command("submit")
@click.argument("service")
@click.option("--function", "function", default="noop", show_default=True, help="The function to run (train_model or noop).")
@click.option("--input", "input_json", default="{}", help="The function's input as a JSON object.")
@click.option("--batch", "batch_file", type=click.File("r"), default=None,
              help="A JSON Lines file (- for stdin), one execution per line ({\"function\": ..., \"input\": {...}}, optional"
                   " \"execution\" and \"project\"); at most 1,000 lines, enqueued all or nothing.")
@json_option()
@click.pass_context
def executions_submit(ctx: click.Context, service: str, function: str, input_json: str, batch_file: click.utils.LazyFile | None,
                      as_json: bool) -> None:
    """Enqueue a function on SERVICE; with --batch, every line of a file in one request (an invalid
    line enqueues nothing, and the error names its index, counted from 0)."""
    client = client_of(ctx)
    if batch_file is None:
        answer = client.enqueue(service, function, _json_object(input_json, "--input"))
        print_json(answer) if as_json else say(f"execution {answer['id']}: {answer['status']} on {answer['service']}")
        return
    items = [_json_object(line, f"--batch line {number}") for number, line in enumerate(batch_file, 1) if line.strip()]
    answer = client.enqueue_batch(service, items)
    if as_json:
        print_json(answer)
        return
    say(f"{answer['count']} executions pending on {answer['service']}")
    for execution_id in answer["ids"]:
        click.echo(execution_id)


def _json_object(text: str, where: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=where) from None
    if not isinstance(value, dict):
        raise click.BadParameter("a JSON object is needed", param_hint=where)
    return value


def _compared_columns(executions: list[Json]) -> tuple[Column, ...]:
    """A key column, then one column per execution headed by its short id."""
    def value(index: int) -> object:
        return lambda row: _shown(row["values"][index])
    return (Column("key", kind="name"),
            *(Column(short_id(execution["id"]), value(index)) for index, execution in enumerate(executions)))


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


@executions.command("compare")
@click.argument("execution_ids", nargs=-1, required=True)
@click.option("--all", "show_all", is_flag=True, help="Show every option, not only the ones that differ.")
@json_option("Print the whole comparison as JSON, metric series included.")
@click.pass_context
def executions_compare(ctx: click.Context, execution_ids: tuple[str, ...], show_all: bool, as_json: bool) -> None:
    """Compare 2 to 10 executions: the options that differ and the final metrics."""
    comparison = client_of(ctx).compare(*execution_ids)
    if as_json:
        print_json(comparison)
        return
    columns = _compared_columns(comparison["executions"])
    options = [row for row in comparison["configuration"] if show_all or row["differs"]]
    if options:
        print_table(columns, options, "options" if show_all else "options that differ")
    else:
        say("the executions have the same options")
    print_table(columns, comparison["metrics"], "final metrics")


@executions.command("config")
@click.argument("execution_id")
@click.pass_context
def executions_config(ctx: click.Context, execution_id: str) -> None:
    """What a training ran with, as JSON that `trainfaas train --config-file` and `trainfaas blueprints save --file` take."""
    print_json(client_of(ctx).execution_config(execution_id))


@executions.command("delete")
@click.argument("execution_id")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def executions_delete(ctx: click.Context, execution_id: str, yes: bool) -> None:
    """Delete an ended execution with its logs, metrics, checkpoints and files."""
    if not yes:
        click.confirm(f"delete execution {execution_id} with its logs, metrics and files?", abort=True)
    deleted = client_of(ctx).delete_execution(execution_id)
    say(f"execution {deleted['id']} deleted")
