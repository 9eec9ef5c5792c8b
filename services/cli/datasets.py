"""``trainfaas datasets``: write the bundled sample data sets."""
from __future__ import annotations

from pathlib import Path

import click

from trainfaas.adapters.datasets import sample_writer
from trainfaas.services.cli.output import say


@click.group()
def datasets() -> None:
    """Bundled sample data sets."""


@datasets.command("sample")
@click.argument("name", type=click.Choice(["digits", "shapes", "text", "ner"]))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def datasets_sample(name: str, directory: Path) -> None:
    """Write a bundled sample data set into DIRECTORY: digits (image folder), shapes (YOLO
    detection/instance segmentation and image+mask semantic segmentation), text (CSV text
    classification) or ner (CoNLL token classification)."""
    summary = sample_writer(name)(directory)
    say(f"wrote {name} to {directory}: {summary}")
