"""Shared fixtures. Real parts only: a real redis-server (embedded, and the server named by
TRAINFAAS_TEST_REDIS_URL), SQLite files, and the PostgreSQL named by TRAINFAAS_TEST_POSTGRES_URL.

Without those variables the server cases are skipped with a message; with CI=true a missing
server is a failure.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest
import redis

from services.config import Settings, load_settings
from services.db import database, migrate, open_database
from services.embedded_redis import EmbeddedRedis

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def wait_until(predicate: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition", poll_s: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def _missing(what: str, variable: str) -> None:
    message = f"{what} not configured: set {variable} to run these cases"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory: unix socket paths must stay under ~100 characters."""
    path = Path(tempfile.mkdtemp(prefix="tf", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_redis_url() -> Iterator[str]:
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="tfr", dir="/tmp")) / "redis.sock")
    yield server.start()
    server.stop()


def _server_redis_url() -> str:
    url = os.environ.get("TRAINFAAS_TEST_REDIS_URL", "")
    if not url:
        _missing("Redis server", "TRAINFAAS_TEST_REDIS_URL")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {url} does not answer: {exc}") if IN_CI else pytest.skip(f"Redis at {url} does not answer: {exc}")
    return url


def _postgres_database() -> tuple[str, Callable[[], None]]:
    """Create a fresh database on the configured PostgreSQL server; return its URL and a dropper."""
    url = os.environ.get("TRAINFAAS_TEST_POSTGRES_URL", "")
    if not url:
        _missing("PostgreSQL", "TRAINFAAS_TEST_POSTGRES_URL")
    import psycopg2

    name = f"trainfaas_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg2.connect(url, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {url} does not answer: {exc}") if IN_CI else pytest.skip(f"PostgreSQL at {url}: {exc}")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    parsed = urlparse(url)

    def drop() -> None:
        if not database.is_closed():
            database.close()
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return urlunparse(parsed._replace(path=f"/{name}")), drop


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[str]:
    """A fresh, migrated database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        url, drop = f"sqlite:///{short_tmp / 'test.db'}", (lambda: None)
    else:
        url, drop = _postgres_database()
    open_database(url)
    migrate()
    yield url
    if not database.is_closed():
        database.close()
    drop()


@pytest.fixture(params=["embedded", "server"])
def redis_url(request: pytest.FixtureRequest, embedded_redis_url: str) -> Iterator[str]:
    url = embedded_redis_url if request.param == "embedded" else _server_redis_url()
    redis.Redis.from_url(url).flushdb()
    yield url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


STACKS = {"local": ("sqlite", "embedded"), "server": ("postgresql", "server")}


@pytest.fixture(params=list(STACKS))
def stack_settings(request: pytest.FixtureRequest, short_tmp: Path, embedded_redis_url: str) -> Iterator[Settings]:
    """Settings for a whole stack: SQLite + embedded Redis ("local"), or PostgreSQL + a Redis server."""
    db_kind, redis_kind = STACKS[request.param]
    drop: Callable[[], None] = lambda: None  # noqa: E731
    if db_kind == "sqlite":
        db_url = f"sqlite:///{short_tmp / 'trainfaas.db'}"
        redis_url = ""  # the stack starts its own embedded redis-server
    else:
        db_url, drop = _postgres_database()
        redis_url = _server_redis_url()
        redis.Redis.from_url(redis_url).flushdb()
    settings = load_settings(home=short_tmp, database_url=db_url, redis_url=redis_url, port=free_port(), api_url="",
                             reconcile_interval_s=1.0)
    yield settings
    drop()


@pytest.fixture
def stack(stack_settings: Settings) -> Iterator[Any]:
    """The real local stack (gunicorn API, scheduler, process instances) and an SDK client."""
    from services.client import Client
    from services.stack import Stack

    running = Stack(stack_settings).start()
    running.client = Client(stack_settings.api_url)
    try:
        yield running
    finally:
        running.stop(drain_timeout_s=5.0)
