"""The ``trainfaas`` command: the root group, ``trainfaas info``, and where every command lives.

Client commands (one module per noun) talk to the API through the SDK and are registered here;
the commands that run this machine's side (the stack, the scheduler, an instance, the adapter
catalog) are declared by reference and imported only when they run (see group.py).
"""
from __future__ import annotations

import logging

import click

from trainfaas.services.cli import model_files  # noqa: F401 - the models group's import and download
from trainfaas.services.cli.architectures import architectures
from trainfaas.services.cli.blueprints import blueprints
from trainfaas.services.cli.checkpoints import checkpoints
from trainfaas.services.cli.context import settings_of
from trainfaas.services.cli.datasets import datasets
from trainfaas.services.cli.executions import executions
from trainfaas.services.cli.group import LazyCommand, TrainfaasGroup
from trainfaas.services.cli.inference import evaluate, predict
from trainfaas.services.cli.models import models, train
from trainfaas.services.cli.output import json_option, print_json
from trainfaas.services.cli.projects import projects
from trainfaas.services.cli.services import services
from trainfaas.services.cli.tokens import tokens
from trainfaas.services.cli.ui import ui
from trainfaas.services.cli.webhooks import webhooks
from trainfaas.services.core import logs
from trainfaas.services.core.settings import load_settings

# Commands that run this machine's side of trainfaas rather than ask the API.
LOCAL_COMMANDS = {
    "up": LazyCommand("trainfaas.services.cli.server:up",
                      "Run the local stack until Ctrl-C: Redis, the API, the scheduler and its instances."),
    "scheduler": LazyCommand("trainfaas.services.cli.server:scheduler",
                             "Run the scheduler alone (fleet, reaper, reconciler) until Ctrl-C."),
    "migrate": LazyCommand("trainfaas.services.cli.server:migrate_database",
                           "Apply the database's missing migrations; make sure home/admin-token holds an admin token."),
    "demo": LazyCommand("trainfaas.services.cli.server:demo",
                        "Start the stack, train an image classifier on the digits data set, print its metrics, stop."),
    "instance": LazyCommand("trainfaas.services.cli.instance:instance",
                            "Run one instance of a service: pull its queue and run executions in work processes."),
    "adapters": LazyCommand("trainfaas.services.cli.adapters:adapters", "Model adapters and the architectures they serve."),
    "backup": LazyCommand("trainfaas.services.cli.backup:backup",
                          "Write a consistent copy of the database (and, with --artifacts, the files) to FILE (mode 0600)."),
    "restore": LazyCommand("trainfaas.services.cli.backup:restore",
                           "Restore the backup FILE into this home (TRAINFAAS_HOME) and its database; start it with trainfaas up."),
}


@click.group(cls=TrainfaasGroup, lazy_commands=LOCAL_COMMANDS)
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """trainfaas: serverless-style model training on your own machines."""
    settings = load_settings()
    logs.configure(logging.INFO if verbose else logging.WARNING, settings.log_format)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    ctx.obj = {"settings": settings}


@main.command()
@json_option()
@click.pass_context
def info(ctx: click.Context, as_json: bool) -> None:
    """Print the effective settings: home, database URL, Redis URL, API URL."""
    data = settings_of(ctx).public()
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key:15} {value}")


for command in (train, evaluate, predict, models, executions, checkpoints, blueprints, services, projects, tokens, architectures, datasets,
                webhooks, ui):
    main.add_command(command)

if __name__ == "__main__":
    main()
