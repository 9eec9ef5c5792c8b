"""``trainfaas train`` and ``trainfaas models``: create a model and train it, list and show models."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from trainfaas.services.cli.context import client_of
from trainfaas.services.cli.output import Column, json_option, page_options, print_json, print_page, say
from trainfaas.services.cli.progress import follow_and_report

MODEL_COLUMNS = (
    Column("id", kind="id"), Column("project"), Column("name"), Column("architecture"), Column("status", kind="word"),
    Column("created", "created_at", kind="time"),
)


def parse_config(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs to a configuration; a value is JSON if it parses as JSON, else a string."""
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


@click.command()
@click.option("--architecture", "-a", default=None, help="e.g. resnet18, mobilenet_v3_small, sleep (default: the blueprint's or config file's).")
@click.option("--dataset", "-d", default=None,
              help="A registered data set (name, name@3, name@alias), a data set directory, or a name under $TRAINFAAS_HOME/datasets.")
@click.option("--subset", "subsets", multiple=True, metavar="SUBSET=DATASET",
              help="A registered data set for one subset (train=shapes@train, validation=shapes@val), instead of --dataset.")
@click.option("--name", default=None, help="Model name (default: <architecture>-<dataset>).")
@click.option("--epochs", type=int, default=None, help="Shortcut for --config epochs=N.")
@click.option("--config", "-c", "config_pairs", multiple=True, help="Adapter option as key=value (repeatable).")
@click.option("--blueprint", "-b", default=None, help="Start from this blueprint of the project (or quick or full).")
@click.option("--config-file", type=click.File("r"), default=None,
              help="Start from a configuration as `trainfaas executions config` prints it (- for standard input).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Execution timeout in seconds (at most the server's TRAINFAAS_MAX_TIMEOUT_S, 24 h by default).")
@click.option("--max-attempts", type=int, default=None, help="Attempts including the first, 1-10.")
@click.option("--on-reset", type=click.Choice(["rerun", "fail"]), default=None)
@click.option("--from-model", default=None, metavar="MODEL_ID",
              help="Fine-tune: start from this trained model's weights, labels and configuration.")
@click.option("--follow/--no-follow", default=False, help="Show progress until it ends.")
@json_option()
@click.pass_context
def train(ctx: click.Context, architecture: str | None, dataset: str | None, subsets: tuple[str, ...], name: str | None,
          epochs: int | None, config_pairs: tuple[str, ...], blueprint: str | None, config_file: Any, timeout_s: float | None,
          max_attempts: int | None, on_reset: str | None, from_model: str | None, follow: bool, as_json: bool) -> None:
    """Create a model and enqueue its training. Options given here win over the blueprint's or the
    config file's, which win over the adapter's defaults."""
    client = client_of(ctx)
    base = _starting_point(client, blueprint, config_file, architecture)
    architecture = architecture or base.get("architecture")
    if not architecture:
        raise click.UsageError("name the architecture: --architecture, or a blueprint or config file that has one")
    configuration = {**(base.get("configuration") or {}), **parse_config(config_pairs)}
    if epochs is not None:
        configuration["epochs"] = epochs
    flags = (("timeout_s", timeout_s), ("max_attempts", max_attempts), ("on_reset", on_reset))
    execution_settings = {**(base.get("execution") or {}), **{k: v for k, v in flags if v is not None}}
    dataset = dataset or base.get("dataset")
    # The configuration goes with the model so that a bad option is rejected before anything exists.
    model = client.create_model(name or f"{architecture}-{Path(dataset).name if dataset else 'model'}", architecture,
                                configuration=configuration or None, from_model=from_model)
    split = dict(pair.partition("=")[::2] for pair in subsets) or None
    queued(client, client.train(model["id"], dataset, None, execution_settings or None, datasets=split), follow, as_json)


def queued(client: Any, execution: dict[str, Any], follow: bool, as_json: bool) -> None:
    """Say a training was queued; with ``follow``, show its progress and exit 0 only on success."""
    if not follow:
        if as_json:
            print_json(execution)
        else:
            say(f"execution {execution['id']} {execution['status']} on {execution['service']}")
        return
    final = follow_and_report(client, execution["id"], execution["model_id"])
    if as_json:
        print_json(final)
    sys.exit(0 if final["status"] == "success" else 1)


def _starting_point(client: Any, blueprint: str | None, config_file: Any, architecture: str | None) -> dict[str, Any]:
    """The blueprint's or the config file's document (``{architecture, dataset, configuration, execution}``), or {}."""
    if blueprint and config_file:
        raise click.UsageError("give --blueprint or --config-file, not both")
    if blueprint:
        return client.get_blueprint(blueprint, architecture=architecture)  # type: ignore[no-any-return]
    if config_file is None:
        return {}
    try:
        document = json.load(config_file)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--config-file") from None
    if not isinstance(document, dict) or not all(isinstance(document.get(k) or {}, dict) for k in ("configuration", "execution")):
        raise click.BadParameter("an object with architecture, dataset, configuration and execution, as"
                                 " `trainfaas executions config` prints", param_hint="--config-file")
    return document


@click.group()
def models() -> None:
    """List, inspect, clone and train models."""


@models.command("list")
@click.option("--architecture", default=None)
@click.option("--status", default=None)
@click.option("--project", default=None)
@page_options
@click.pass_context
def models_list(ctx: click.Context, architecture: str | None, status: str | None, project: str | None, query: str | None,
                limit: int, cursor: str | None, as_json: bool) -> None:
    """Models, newest first."""
    page = client_of(ctx).page("/api/v1/models", architecture=architecture, status=status, project=project, q=query,
                               limit=limit, cursor=cursor)
    print_page(page, MODEL_COLUMNS, as_json)


@models.command("show")
@click.argument("model_id")
@click.pass_context
def models_show(ctx: click.Context, model_id: str) -> None:
    """One model as JSON."""
    print_json(client_of(ctx).get_model(model_id))


@models.command("clone")
@click.argument("model_id")
@click.option("--name", default=None, help="Default: <name>-clone.")
@click.option("--labels", default=None, help="Comma-separated labels instead of the source's.")
@click.option("--config", "-c", "config_pairs", multiple=True, help="Adapter option as key=value, over the source's (repeatable).")
@click.option("--dataset", "-d", default=None, help="The data set its trainings take by default (default: the source's).")
@json_option()
@click.pass_context
def models_clone(ctx: click.Context, model_id: str, name: str | None, labels: str | None, config_pairs: tuple[str, ...],
                 dataset: str | None, as_json: bool) -> None:
    """A new model like MODEL_ID (architecture, labels, options, data set) without its weights."""
    clone = client_of(ctx).clone_model(model_id, name=name, labels=labels.split(",") if labels else None,
                                       configuration=parse_config(config_pairs) or None, dataset=dataset)
    if as_json:
        print_json(clone)
    else:
        say(f"model {clone['id']} ({clone['name']}) cloned from {clone['cloned_from']};"
            f" train it with `trainfaas models train {clone['id'][:12]}`")


@models.command("train")
@click.argument("model_id")
@click.option("--dataset", "-d", default=None, help="Default: the model's own data set (a clone's).")
@click.option("--config", "-c", "config_pairs", multiple=True, help="Adapter option as key=value, over the model's (repeatable).")
@click.option("--blueprint", "-b", default=None, help="Take options, settings and data set from this blueprint first.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Execution timeout in seconds.")
@click.option("--max-attempts", type=int, default=None, help="Attempts including the first, 1-10.")
@click.option("--on-reset", type=click.Choice(["rerun", "fail"]), default=None)
@click.option("--keep-checkpoints", type=int, default=None, help="Checkpoints kept besides the best, newest first (1-1000; default 3).")
@click.option("--follow/--no-follow", default=False, help="Show progress until it ends.")
@json_option()
@click.pass_context
def models_train(ctx: click.Context, model_id: str, dataset: str | None, config_pairs: tuple[str, ...], blueprint: str | None,
                 timeout_s: float | None, max_attempts: int | None, on_reset: str | None, keep_checkpoints: int | None,
                 follow: bool, as_json: bool) -> None:
    """Enqueue a training of an existing model (a clone, or one trained before)."""
    client = client_of(ctx)
    flags = (("timeout_s", timeout_s), ("max_attempts", max_attempts), ("on_reset", on_reset), ("keep_checkpoints", keep_checkpoints))
    execution = client.train(model_id, dataset, parse_config(config_pairs) or None,
                             {k: v for k, v in flags if v is not None} or None, blueprint=blueprint)
    queued(client, execution, follow, as_json)


@models.command("delete")
@click.argument("model_id")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def models_delete(ctx: click.Context, model_id: str, yes: bool) -> None:
    """Delete a model with its trainings, their checkpoints and files."""
    if not yes:
        click.confirm(f"delete model {model_id} with its trainings and their files?", abort=True)
    deleted = client_of(ctx).delete_model(model_id)
    say(f"model {deleted['id']} ({deleted['name']}) deleted")
