"""``trainfaas evaluate`` and ``trainfaas predict``: run a trained model on a data set or on inputs."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from trainfaas.services.cli.context import client_of
from trainfaas.services.cli.output import Column, json_option, print_json, print_table, say
from trainfaas.services.cli.progress import follow
from trainfaas.services.sdk.client import Client

TEXT_TASKS = ("text-classification", "token-classification")
FIGURE_COLUMNS = (Column("metric"), Column("value"))
CLASS_COLUMNS = (Column("label", kind="name"), Column("precision"), Column("recall"), Column("f1"), Column("support"))
PREDICTION_COLUMNS = (Column("input", kind="name"), Column("prediction"))


def _number(value: Any) -> Any:
    return f"{value:.4f}" if isinstance(value, float) else value


def _settings(timeout_s: float | None, max_attempts: int | None) -> dict[str, Any] | None:
    given = {key: value for key, value in (("timeout_s", timeout_s), ("max_attempts", max_attempts)) if value is not None}
    return given or None


def _ended(client: Client, execution: dict[str, Any], follows: bool, as_json: bool, report: Any) -> None:
    """Say the execution was queued; with ``follows``, follow it, print its output and exit 0 only on success."""
    if not follows:
        if as_json:
            print_json(execution)
        else:
            say(f"execution {execution['id']} {execution['status']} on {execution['service']}")
        return
    final = follow(client, execution["id"])
    if as_json:
        print_json(final)
    else:
        say(f"execution {final['id']}: {final['status']} after {final['duration_s']} s, attempt {final['attempt']}")
        if final.get("error"):
            say(final["error"])
        if final["status"] == "success":
            report(final["output"] or {})
    sys.exit(0 if final["status"] == "success" else 1)


def print_metrics(output: dict[str, Any]) -> None:
    """The scalar metrics of an evaluation, then its per-class (or per-entity) table."""
    metrics = output.get("metrics") or {}
    rows = [{"metric": key, "value": _number(value)} for key, value in sorted(metrics.items()) if isinstance(value, (int, float))]
    print_table(FIGURE_COLUMNS, rows, f"{output.get('task', '')} metrics on {output.get('subset', '')}")
    per_class = metrics.get("per_class") or {}
    if per_class:
        rows = [{"label": label, **{key: _number(value) for key, value in figures.items()}} for label, figures in per_class.items()]
        columns = [column for column in CLASS_COLUMNS if column.header == "label" or any(column.header in row for row in rows)]
        print_table(columns, rows, "per class")


def _summary(prediction: dict[str, Any]) -> str:
    if "error" in prediction:
        return f"error: {prediction['error']}"
    if "tags" in prediction:
        return " ".join(f"{token}/{tag}" for token, tag in zip(prediction["tokens"], prediction["tags"], strict=False))
    if "objects" in prediction:
        found = [f"{o['label']} {o['score']:.2f} at {[round(v) for v in o['box']]}" for o in prediction["objects"]]
        return "; ".join(found) or "nothing found"
    if "pixels" in prediction:
        return f"{prediction['pixels']} pixels; mask {prediction['mask_path']}"
    return ", ".join(f"{s['label']} {s['score']:.3f}" for s in prediction.get("scores", [])) or f"{prediction.get('label')}"


def print_predictions(output: dict[str, Any]) -> None:
    rows = [{"input": p.get("input", ""), "prediction": _summary(p)} for p in output.get("predictions", [])]
    print_table(PREDICTION_COLUMNS, rows, "predictions")


@click.command()
@click.argument("model_id")
@click.option("--dataset", "-d", required=True, help="Data set directory inside a data root, or its name relative to the first data root.")
@click.option("--subset", type=click.Choice(["validation", "train"]), default=None, help="The subset to score (default: validation).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Execution timeout in seconds.")
@click.option("--max-attempts", type=int, default=None, help="Attempts including the first, 1-10.")
@click.option("--follow/--no-follow", default=False, help="Show progress until it ends, then the metrics.")
@json_option()
@click.pass_context
def evaluate(ctx: click.Context, model_id: str, dataset: str, subset: str | None, timeout_s: float | None,
             max_attempts: int | None, follow: bool, as_json: bool) -> None:
    """Evaluate a trained model on a data set; the execution's output holds the task's metrics."""
    client = client_of(ctx)
    execution = client.evaluate(model_id, dataset, subset, _settings(timeout_s, max_attempts))
    _ended(client, execution, follow, as_json, print_metrics)


def prediction_inputs(values: tuple[str, ...], text: bool, on_server: bool) -> list[Any]:
    """What ``trainfaas predict`` sends for its arguments: texts for a text model; for an image model a
    local file's bytes (sent inline), else the path of a file in the server's data roots."""
    if on_server:
        return [{"file": value} for value in values]
    if text:
        return list(values)
    return [Path(value) if Path(value).is_file() else {"file": value} for value in values]


@click.command()
@click.argument("model_id")
@click.argument("inputs", nargs=-1, required=True, metavar="FILE_OR_TEXT...")
@click.option("--server-files", is_flag=True,
              help="Every argument is a file's path relative to the server's first data root (read there, not sent).")
@click.option("--top-k", type=int, default=None, help="Classification: how many labels to list with their scores (default 5).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Execution timeout in seconds.")
@click.option("--max-attempts", type=int, default=None, help="Attempts including the first, 1-10.")
@click.option("--follow/--no-follow", default=False, help="Show progress until it ends, then the predictions.")
@json_option()
@click.pass_context
def predict(ctx: click.Context, model_id: str, inputs: tuple[str, ...], server_files: bool, top_k: int | None,
            timeout_s: float | None, max_attempts: int | None, follow: bool, as_json: bool) -> None:
    """Run a trained model on inputs: texts for a text model; image files for an image model (a local
    file is sent inline, another path is read from the server's data roots)."""
    client = client_of(ctx)
    model = client.get_model(model_id)
    sent = prediction_inputs(inputs, model["task"] in TEXT_TASKS, server_files)
    execution = client.predict(model["id"], sent, top_k, _settings(timeout_s, max_attempts))
    _ended(client, execution, follow, as_json, print_predictions)
