"""Data sets: where a training may read from, and whether its adapter can read what is there."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from trainfaas.adapters.base import ModelAdapter
from trainfaas.adapters.confine import walk_budget
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.settings import Settings


def resolve_dataset(settings: Settings, dataset: str) -> Path:
    """The data set's directory, symlinks resolved; ConfigError unless it lies in a data root.

    A name is taken relative to the first data root (by default home/datasets). Checking the resolved path keeps ``..`` and
    symlinks from reaching files the API process can read but the caller should not.
    """
    roots = settings.dataset_roots
    if "\x00" in dataset:  # no file system takes it: a path with one cannot name a directory
        raise ConfigError("the data set path holds a NUL character", {"dataset": "a directory path without NUL characters"})
    allowed = {"dataset": f"a directory inside {' or '.join(map(str, roots))} (TRAINFAAS_DATA_ROOTS)"}
    try:
        path = Path(dataset).expanduser()
        if not path.is_absolute():
            path = roots[0] / dataset
        resolved = path.resolve()
    except (RuntimeError, OSError) as exc:  # ~name of no user, a loop of links, a name too long
        raise ConfigError(f"data set {dataset[:200]!r} names no directory: {exc}", allowed) from None
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ConfigError(f"data set {dataset} lies outside the data roots", allowed)
    return resolved


def check_dataset(settings: Settings, adapter: type[ModelAdapter], path: Path, configuration: dict[str, Any]) -> list[str]:
    """Validate the data set with the adapter's own reader and return its labels.

    The check runs inside the API's request, so its walk is bounded: at most
    ``dataset_check_max_files`` files and folders, ``dataset_check_seconds`` in all (a 422 beyond).
    The built-in readers also refuse any file that leads outside the data set's folder."""
    with walk_budget(settings.dataset_check_max_files, settings.dataset_check_seconds):
        return adapter.check_dataset(path, configuration)


def dataset_for(settings: Settings, adapter: type[ModelAdapter], architecture: str, dataset: str | None,
                configuration: dict[str, Any]) -> Path | None:
    """The checked data set directory a training of ``architecture`` reads, or None for an
    adapter that reads none; ConfigError when one is needed and missing, outside or unreadable."""
    if adapter.dataset_format is None:
        return None
    if not dataset:
        raise ConfigError(f"{architecture} trains on a data set", {"dataset": f"required: a {adapter.dataset_format} directory"})
    path = resolve_dataset(settings, dataset)
    check_dataset(settings, adapter, path, configuration)
    return path
