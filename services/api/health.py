"""Liveness: answers without a token so that load balancers and `trainfaas up` can poll it."""
from __future__ import annotations

from flask import Blueprint

from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import Health

bp = Blueprint("health", __name__)


@endpoint(bp, "GET", "/healthz", response=Health, access="public")
def healthz() -> dict[str, str]:
    """The API process is up."""
    return {"status": "ok"}
