"""Writing a bundled sample data set once: built in a scratch folder beside its destination, moved in,
and marked complete last, so that an interrupted export never looks complete and a repeated one
writes nothing."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainfaas.services.core.files import atomic_write_text

MARKER = "trainfaas-sample.json"
"""Written last into a sample's folder: the parameters of the complete export there, and its summary."""


def export_once(dest: Path, parameters: dict[str, Any], entries: tuple[str, ...],
                write: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Unless ``dest`` holds a complete export made with ``parameters``, call ``write(scratch)`` on a scratch
    folder beside ``dest`` and move its ``entries`` (files or folders) into ``dest``, replacing those there;
    other files in ``dest`` stay. Returns the summary ``write`` returned, then or for the export found,
    with ``path`` (``dest``) first."""
    dest = Path(dest)
    try:
        marker = json.loads((dest / MARKER).read_text())
        if marker.get("parameters") == parameters:
            return {"path": str(dest), **marker["summary"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        summary = {"path": str(dest), **write(scratch)}
        dest.mkdir(parents=True, exist_ok=True)
        (dest / MARKER).unlink(missing_ok=True)
        for entry in entries:
            if (dest / entry).is_dir():
                shutil.rmtree(dest / entry)
            os.replace(scratch / entry, dest / entry)
        # The marker goes last: a reader that sees it sees the whole export.
        atomic_write_text(dest / MARKER, json.dumps({"parameters": parameters, "summary": summary}, indent=2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return summary
