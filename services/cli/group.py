"""The root command group: API errors as one line, and local commands loaded when they run.

The local commands (``up``, ``scheduler``, ``instance``, ``demo``, ``adapters``) import the stack,
the scheduler, the worker or the adapter catalog; a client command never needs them. The root
declares them by ``module:attr`` with their one-line help, and they are imported only when invoked
or asked for their own help (click's "lazily loading subcommands"), so ``trainfaas --help`` and
the client commands start without them, and an instance process imports only the worker.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import click
from rich.markup import escape

from trainfaas.services.cli.output import console, printable
from trainfaas.services.core.errors import TrainfaasError
from trainfaas.services.core.references import resolve
from trainfaas.services.sdk.client import ApiError


@dataclass(frozen=True)
class LazyCommand:
    """A command imported on demand: where it lives, and the help line ``trainfaas --help`` shows."""

    reference: str  # module:attr
    short_help: str


class TrainfaasGroup(click.Group):
    def __init__(self, *args: Any, lazy_commands: dict[str, LazyCommand] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands or {}

    def invoke(self, ctx: click.Context) -> Any:
        """Turn an API error into one readable line and exit code 1."""
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            # The message names what the caller gave (names, ids): printed as text, never as markup.
            console(stderr=True).print(f"[red]error:[/red] {escape(printable(str(exc)))}", highlight=False)
            sys.exit(1)
        except TrainfaasError as exc:  # a local command's (up, backup, restore): the same one line
            fields = "; ".join(f"{name}: {allowed}" for name, allowed in exc.fields.items())
            text = f"{exc.message} ({fields})" if fields else exc.message
            console(stderr=True).print(f"[red]error:[/red] {escape(printable(text))}", highlight=False)
            sys.exit(1)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_commands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = self.lazy_commands.get(cmd_name)
        if lazy is None:
            return super().get_command(ctx, cmd_name)
        command = resolve(lazy.reference, "command")
        if not isinstance(command, click.Command):
            raise TypeError(f"{lazy.reference} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, with the declared help of lazy commands, so that listing imports none."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        rows = [(name, help) for name in names if (help := self.command_help(ctx, name, limit)) is not None]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def command_help(self, ctx: click.Context, name: str, limit: int) -> str | None:
        """The help line of command ``name``; None for a hidden one."""
        lazy = self.lazy_commands.get(name)
        if lazy is not None:
            return click.Command(name, short_help=lazy.short_help).get_short_help_str(limit)
        command = super().get_command(ctx, name)
        return None if command is None or command.hidden else command.get_short_help_str(limit)
