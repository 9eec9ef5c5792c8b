"""The architecture catalog: what can be trained, by which adapter and service, and how big it is."""
from __future__ import annotations

from typing import Any

from flask import Blueprint

from trainfaas.adapters.architectures import architectures, options
from trainfaas.services.api import settings
from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import ArchitectureDetail, ArchitectureOut, ArchitectureQuery, Page
from trainfaas.services.control.tokens import Principal
from trainfaas.services.core.errors import ConfigError

bp = Blueprint("architectures", __name__, url_prefix="/api/v1/architectures")


@endpoint(bp, "GET", "", query=ArchitectureQuery, response=Page[ArchitectureOut])
def index(query: ArchitectureQuery, principal: Principal) -> dict[str, Any]:
    """List architectures sorted by task and name, with their size figures."""
    rows = architectures(settings().adapters, task=query.task)
    if query.q:
        rows = [row for row in rows if query.q.lower() in row["architecture"].lower()]
    # The catalog is small and fixed while the API runs: the cursor is the position of the next item.
    start = 0
    if query.cursor:
        if not query.cursor.isdigit() or int(query.cursor) > len(rows):
            raise ConfigError("the cursor is not one this API returned", {"cursor": "the next_cursor of the previous page"})
        start = int(query.cursor)
    end = start + query.limit
    return {"items": rows[start:end], "next_cursor": str(end) if end < len(rows) else None}


@endpoint(bp, "GET", "/<name>", response=ArchitectureDetail, errors=(404,))
def show(name: str, principal: Principal) -> dict[str, Any]:
    """One architecture with its adapter's declared options (JSON Schema)."""
    row = architectures(settings().adapters, names=[name])[0]
    return {**row, "options": options(name, settings().adapters)}
