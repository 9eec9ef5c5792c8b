"""``trainfaas checkpoints``: make a model of a checkpoint, delete one; and the commands of
``trainfaas executions`` that list an execution's checkpoints and remove an execution from training.

A checkpoint id may be given whole or as the short id a table shows; the API resolves it.
"""
from __future__ import annotations

import click

from trainfaas.services.cli.context import client_of
from trainfaas.services.cli.executions import executions
from trainfaas.services.cli.output import Column, Json, json_option, print_json, print_rows, say


def _size(row: Json) -> str:
    size = row["size"]
    return "-" if size is None else f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size} B"


def _marks(row: Json) -> str:
    return " ".join(word for word, on in (("best", row["is_best"]), ("last", row["is_last"])) if on)


def _metrics(row: Json) -> str:
    return " ".join(f"{key} {value:.4g}" if isinstance(value, (int, float)) else f"{key} {value}"
                    for key, value in sorted(row["metrics"].items()))


CHECKPOINT_COLUMNS = (
    Column("id", kind="id"), Column("attempt", kind="word"), Column("step", kind="word"), Column("kept as", _marks, kind="word"),
    Column("size", _size, kind="word"), Column("created", kind="time"), Column("metrics", _metrics),
)


@executions.command("checkpoints")
@click.argument("execution_id")
@json_option("Print the checkpoints as a JSON list.")
@click.pass_context
def executions_checkpoints(ctx: click.Context, execution_id: str, as_json: bool) -> None:
    """An execution's checkpoints, oldest first: its best and its newest keep_checkpoints."""
    print_rows(client_of(ctx).checkpoints(execution_id), CHECKPOINT_COLUMNS, as_json)


@executions.command("remove")
@click.argument("execution_id")
@json_option()
@click.pass_context
def executions_remove(ctx: click.Context, execution_id: str, as_json: bool) -> None:
    """Remove an execution from training: stop it if it has not ended, and leave it out of `executions list`
    (`--include-removed` shows it). Its logs, metrics, checkpoints and files stay until it is deleted."""
    execution = client_of(ctx).remove_execution(execution_id)
    if as_json:
        print_json(execution)
        return
    stopping = " (stopping at its next step)" if execution["status"] == "in-progress" else ""
    say(f"execution {execution['id']} removed from training: {execution['status']}{stopping}")


@click.group()
def checkpoints() -> None:
    """Make a model of a checkpoint, or delete one (list them with `trainfaas executions checkpoints ID`)."""


@checkpoints.command("model")
@click.argument("checkpoint_id")
@click.option("--name", default=None, help="The new model's name (default: <model name>-step-<step>).")
@json_option()
@click.pass_context
def checkpoints_model(ctx: click.Context, checkpoint_id: str, name: str | None, as_json: bool) -> None:
    """A new trained model with a copy of the checkpoint's weights, its training's architecture, labels and options."""
    model = client_of(ctx).model_from_checkpoint(checkpoint_id, name=name)
    if as_json:
        print_json(model)
        return
    say(f"model {model['id']} ({model['name']}) made from step {model['source_step']} of execution {model['source_execution']}")


@checkpoints.command("delete")
@click.argument("checkpoint_id")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def checkpoints_delete(ctx: click.Context, checkpoint_id: str, yes: bool) -> None:
    """Delete a checkpoint and its file (not the one a waiting or running rerun resumes from)."""
    if not yes:
        click.confirm(f"delete checkpoint {checkpoint_id} and its file?", abort=True)
    deleted = client_of(ctx).delete_checkpoint(checkpoint_id)
    say(f"checkpoint {deleted['id']} (step {deleted['step']} of execution {deleted['execution_id']}) deleted")

