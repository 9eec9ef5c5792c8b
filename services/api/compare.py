"""Executions compared: configurations, final metrics and metric series side by side."""
from __future__ import annotations

from typing import Any

from flask import Blueprint

from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import CompareQuery, Comparison
from trainfaas.services.control import compare as control
from trainfaas.services.control.tokens import Principal

bp = Blueprint("compare", __name__, url_prefix="/api/v1")


@endpoint(bp, "GET", "/compare", query=CompareQuery, response=Comparison, errors=(404, 409))
def compare(query: CompareQuery, principal: Principal) -> dict[str, Any]:
    """Compare 2 to 10 executions of one project: their configurations (the keys that differ
    marked), final metrics, and each metric series aligned by step."""
    return control.compare(query.executions, principal.reach, query.max_points)
