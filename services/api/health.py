"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: its database and Redis
answer), both without a token so that load balancers, orchestrators and `trainfaas up` can poll them."""
from __future__ import annotations

import peewee
import redis
from flask import Blueprint, current_app

from trainfaas.services.api.registry import endpoint
from trainfaas.services.api.schemas import Health, Ready
from trainfaas.services.core.errors import Unavailable
from trainfaas.services.store.database import database

bp = Blueprint("health", __name__)


@endpoint(bp, "GET", "/healthz", response=Health, access="public")
def healthz() -> dict[str, str]:
    """The API process is up."""
    return {"status": "ok"}


@endpoint(bp, "GET", "/readyz", response=Ready, access="public", errors=(503,))
def readyz() -> dict[str, str]:
    """The API can serve: its database and its Redis answer (503 naming the one that does not)."""
    failed = {}
    try:
        database.connect(reuse_if_open=True)
        database.execute_sql("SELECT 1")
    except peewee.PeeweeException as exc:
        failed["database"] = f"does not answer ({type(exc).__name__})"
    try:
        current_app.extensions["redis"].ping()
    except redis.RedisError as exc:
        failed["redis"] = f"does not answer ({type(exc).__name__})"
    if failed:
        raise Unavailable(f"not ready: the {' and the '.join(failed)} {'do' if len(failed) > 1 else 'does'} not answer", failed)
    return {"status": "ready", "database": "ok", "redis": "ok"}
