"""``trainfaas models import`` and ``trainfaas models download``: weights in and models out."""
from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from trainfaas.services.cli.context import client_of
from trainfaas.services.cli.models import models
from trainfaas.services.cli.output import console, json_option, print_json, say


@models.command("import")
@click.option("--architecture", "-a", default=None, help="The architecture the weights are of, e.g. resnet18, yolov8n (an archive names its own).")
@click.option("--weights", "-w", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A weights file to upload: a torch state dict (.pt/.pth), an ultralytics checkpoint, or a model archive.")
@click.option("--archive", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A model archive as `trainfaas models download` saved it, uploaded unchanged (its manifest gives architecture and labels).")
@click.option("--path", default=None, help="Instead of --weights: a weights file, model folder or archive inside the server's data roots.")
@click.option("--labels", default=None, help="Comma-separated labels, one per class of the weights' head, in order.")
@click.option("--name", default=None, help="Default: the file's name without its suffix (an archive: the model's name).")
@click.option("--project", default=None, help="Default: the token's project.")
@json_option()
@click.pass_context
def models_import(ctx: click.Context, architecture: str | None, weights: Path | None, archive: Path | None, path: str | None,
                  labels: str | None, name: str | None, project: str | None, as_json: bool) -> None:
    """Import weights you already have as a pre-trained model (fine-tune it with `trainfaas train --from-model ID`),
    or a downloaded model archive as the model was (a trained one predicts and evaluates)."""
    if sum(given is not None for given in (weights, archive, path)) != 1:
        raise click.UsageError("give the weights as --weights FILE or --archive FILE (uploaded) or --path (on the server), one of them")
    if archive is not None:
        model = client_of(ctx).import_archive(archive, name=name, project=project, architecture=architecture)
    elif architecture is None and weights is not None:
        raise click.UsageError("weights need --architecture (an archive, given as --archive, names its own)")
    else:
        model = client_of(ctx).import_model(architecture, weights, path=path, labels=labels.split(",") if labels else None,
                                            name=name, project=project)
    if as_json:
        print_json(model)
    else:
        say(f"model {model['id']} ({model['name']}) {model['status']}, {len(model['labels'])} labels;"
            f" fine-tune it with `trainfaas train --from-model {model['id'][:12]} ...`")


@models.command("download")
@click.argument("model_id")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The archive to write (.tar.gz).")
@click.pass_context
def models_download(ctx: click.Context, model_id: str, output: Path) -> None:
    """Save a trained or pre-trained model as a tar.gz: its files under model/ and manifest.json (with their sha256)."""
    with Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console(stderr=True), transient=True) as progress:
        task = progress.add_task("download", total=None)
        size = client_of(ctx).download_model(model_id, output, lambda done, total: progress.update(task, completed=done, total=total))
    say(f"model {model_id} saved to {output} ({size} bytes)")
