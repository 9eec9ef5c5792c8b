"""``trainfaas instance``: one instance of a service, as the scheduler's backends start it
(``python -m trainfaas.services.cli instance --service ...``).

The root group imports this module only when the command runs (see group.py), so an instance
process loads the worker and not the stack or the scheduler.
"""
from __future__ import annotations

import logging

import click

from trainfaas.services.cli.context import settings_of
from trainfaas.services.worker.instance import main as run_instance


@click.command()
@click.option("--service", required=True, help="The service to serve, e.g. mgmt-train-resnet18.")
@click.option("--instance-id", default=None, help="Adopt this pre-registered instance id (set by the scheduler).")
@click.option("--concurrency", default=None, type=int, help="Executions at once (default: the service's).")
@click.option("--backend", default="process", show_default=True, envvar="TRAINFAAS_INSTANCE_BACKEND",
              help="Backend that runs this instance (process, docker, swarm); reported when it registers.")
@click.pass_context
def instance(ctx: click.Context, service: str, instance_id: str | None, concurrency: int | None, backend: str) -> None:
    """Run one instance of a service: pull its queue and run executions in work processes."""
    logging.getLogger().setLevel(logging.INFO)
    run_instance(settings_of(ctx), service, instance_id, concurrency, backend)
