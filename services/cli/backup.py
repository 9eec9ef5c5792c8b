"""``trainfaas backup`` and ``trainfaas restore``: a home and its database to one file and back,
while the stack runs (see trainfaas.services.local.backup).

The root group imports this module only when one of them runs (see group.py).
"""
from __future__ import annotations

from pathlib import Path

import click

from trainfaas.services.cli.context import settings_of
from trainfaas.services.cli.output import say
from trainfaas.services.local.backup import backup as take_backup
from trainfaas.services.local.backup import restore as put_back


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--artifacts", is_flag=True, help="Also the trained models, checkpoints and execution outputs.")
@click.pass_context
def backup(ctx: click.Context, file: Path, artifacts: bool) -> None:
    """Write a consistent copy of the database (and, with --artifacts, the files) to FILE (mode 0600)."""
    manifest = take_backup(settings_of(ctx), file, artifacts, progress=say)
    size = sum(entry["size"] for entry in manifest["files"])
    say(f"backup of {manifest['home']} ({manifest['database']}, schema {manifest['schema_version']}): "
        f"{len(manifest['files'])} files, {size / 1e6:.1f} MB")


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite a home (and a PostgreSQL database) that is not empty.")
@click.pass_context
def restore(ctx: click.Context, file: Path, force: bool) -> None:
    """Restore the backup FILE into this home (TRAINFAAS_HOME) and its database; start it with trainfaas up."""
    manifest = put_back(settings_of(ctx), file, force, progress=say)
    say(f"restored the backup of {manifest['home']}; executions that were running are rerun when the stack starts")
