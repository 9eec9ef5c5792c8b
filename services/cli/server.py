"""The server commands: ``trainfaas up`` (the whole local stack), ``trainfaas scheduler`` (the
scheduler alone), ``trainfaas migrate`` (the database's migrations) and ``trainfaas demo`` (the
stack, one training, its metrics, stop).

The root group imports this module only when one of them runs (see group.py).
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import click

from trainfaas.adapters.datasets import write_digits
from trainfaas.scheduler.backends import create_all
from trainfaas.scheduler.daemon import Scheduler
from trainfaas.services.cli.context import settings_of
from trainfaas.services.cli.output import say
from trainfaas.services.cli.progress import follow_and_report
from trainfaas.services.control.tokens import ensure_admin_token
from trainfaas.services.core.settings import load_settings
from trainfaas.services.local.stack import Stack
from trainfaas.services.store.database import open_database
from trainfaas.services.store.migrations import migrate


@click.command()
@click.option("--host", default=None, help="Address the API listens on (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port of the API (default 8080).")
@click.pass_context
def up(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the local stack until Ctrl-C: Redis, the API, the scheduler and its instances."""
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = load_settings(**overrides, api_url="") if overrides else settings_of(ctx)
    logging.getLogger().setLevel(logging.INFO)
    stack = Stack(settings).start()
    say(f"trainfaas is up: API {settings.api_url}, home {settings.home}. Ctrl-C stops it.")
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            say("stopping now; running executions will be rerun on the next start")
            if stack.scheduler is not None:
                for backend in stack.scheduler.backends.values():
                    backend.close(0)
            return
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stopping.wait()
    say("stopping: draining running executions (Ctrl-C again to stop now)…")
    stack.stop(drain_timeout_s=60.0)
    say("stopped")


@click.command("scheduler")
@click.pass_context
def scheduler(ctx: click.Context) -> None:
    """Run the scheduler alone (fleet, reaper, reconciler) until Ctrl-C."""
    settings = settings_of(ctx)
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


@click.command("migrate")
@click.pass_context
def migrate_database(ctx: click.Context) -> None:
    """Apply the database's missing migrations; make sure home/admin-token holds an admin token.

    The migrations applied are printed; ``trainfaas up`` does the same at its start. Idempotent: the
    API of deploy/compose.yaml and deploy/stack.yaml runs it before gunicorn starts."""
    settings = settings_of(ctx)
    open_database(settings.database_url)
    applied = migrate()
    say(f"applied migrations {', '.join(map(str, applied))}" if applied else "the database is up to date")
    ensure_admin_token(settings.admin_token_path)


@click.command()
@click.option("--architecture", default="resnet18")
@click.pass_context
def demo(ctx: click.Context, architecture: str) -> None:
    """Start the stack, train an image classifier on the digits data set, print its metrics, stop."""
    settings = settings_of(ctx)
    dataset = settings.dataset_roots[0] / "digits"  # the API accepts data sets inside its data roots only
    say(f"writing the digits data set to {dataset}")
    write_digits(dataset)
    say(f"starting the local stack in {settings.home} (API {settings.api_url})")
    with Stack(settings) as stack:
        client = stack.admin_client()
        model = client.create_model(f"digits-{architecture}", architecture)
        execution = client.train(model["id"], dataset=str(dataset))
        say(f"training {architecture} on digits: execution {execution['id']} on {execution['service']}")
        final = follow_and_report(client, execution["id"], model["id"])
    sys.exit(0 if final["status"] == "success" else 1)
