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

from tests import summary
from trainfaas.services.core.settings import Settings, load_settings
from trainfaas.services.local.embedded_redis import EmbeddedRedis
from trainfaas.services.store.database import database, open_database
from trainfaas.services.store.migrations import migrate

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The notes of tests/summary.py (e.g. which runner image the Docker tests ran with)."""
    for line in dict.fromkeys(config.stash.get(summary.NOTES, [])):
        terminalreporter.write_line(line)

# The suite's stacks run their work processes as root (TRAINFAAS_WORK_USER=root) unless told
# otherwise: on the test machines the Python installation lies under /root (mode 0700) and pytest's
# temporary directories, where tests write data sets, are 0700 too, so the work user could read
# neither. tests/test_work_isolation.py runs a stack with the work user, as production does.
os.environ.setdefault("TRAINFAAS_WORK_USER", "root")


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


def data_roots_for_tests(home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Data roots of test stacks: their home and pytest's temporary directories, where tests write data sets."""
    return ":".join(str(p) for p in (home, tmp_path_factory.getbasetemp()))


@pytest.fixture(params=list(STACKS))
def stack_settings(request: pytest.FixtureRequest, short_tmp: Path, embedded_redis_url: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
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
    # Tests inject faults with the sleep adapter's options: the stacks they start allow them.
    settings = load_settings(home=short_tmp, database_url=db_url, redis_url=redis_url, port=free_port(), api_url="",
                             reconcile_interval_s=1.0, data_roots=data_roots_for_tests(short_tmp, tmp_path_factory),
                             diagnostics=True)
    yield settings
    drop()


@pytest.fixture
def stack(stack_settings: Settings) -> Iterator[Any]:
    """The real local stack (gunicorn API, scheduler, process instances) and an SDK client with its admin token."""
    from trainfaas.services.local.stack import Stack

    running = Stack(stack_settings).start()
    running.client = running.admin_client()
    try:
        yield running
    finally:
        running.stop(drain_timeout_s=5.0)


class NetworkAttempt(AssertionError):
    """Raised inside the code under test when it tries to reach the network."""


def guard_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make any TCP/UDP connection or name lookup raise NetworkAttempt and record it; return the
    record. Unix sockets (the local pipes) stay allowed. For module-scoped fixtures that train,
    pass a ``pytest.MonkeyPatch.context()``."""
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def _refuse(what: str) -> NetworkAttempt:
        attempts.append(what)
        return NetworkAttempt(f"network access during training: {what}")

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise _refuse(f"connect {address!r}")

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX:
            return real_connect_ex(self, address)
        raise _refuse(f"connect_ex {address!r}")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        raise _refuse(f"getaddrinfo {host!r}")

    def sendto(self: socket.socket, data: Any, *args: Any) -> Any:
        raise _refuse(f"sendto {args[-1]!r}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Guard the socket layer (see guard_network). Yields the list of attempts; the fixture fails
    the test if it is not empty, even when the code under test swallowed the exception."""
    attempts = guard_network(monkeypatch)
    yield attempts
    assert not attempts, f"training attempted network access: {attempts}"


@pytest.fixture
def api(database_url: str, redis_url: str, short_tmp: Path) -> Iterator[Any]:
    """The real Flask app (in-process) over a fresh database and Redis, with an admin token.

    ``api.client`` sends the admin token; ``api.as_(secret)`` is a client with another token
    (or none); ``api.redis`` is the app's Redis.
    """
    from trainfaas.services.api.app import create_app
    from trainfaas.services.control import tokens as auth

    settings = load_settings(home=short_tmp, database_url=database_url, redis_url=redis_url,
                             data_roots=str(short_tmp / "data"), diagnostics=True)
    app = create_app(settings)
    _, admin = auth.create_token("admin", None, name="tests")

    def as_(secret: str | None) -> Any:
        client = app.test_client()
        if secret is not None:
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
        return client

    app.settings, app.admin_token, app.as_ = settings, admin, as_
    app.client, app.redis = as_(admin), redis.Redis.from_url(redis_url)
    yield app


def start_instance(api: Any, service: str) -> tuple[str, str]:
    """An instance started the scheduler's way (FleetKeeper.start_instance, on an in-memory
    backend): the id of its row and the one-time registration token it was handed."""
    from trainfaas.scheduler.backends.memory import MemoryBackend
    from trainfaas.scheduler.fleet import FleetKeeper
    from trainfaas.services.store.records import Service

    backend = MemoryBackend()
    row = Service.get_by_id(service)
    instance = FleetKeeper(api.settings, {row.backend: backend}, clock=time.time).start_instance(row)
    return instance.id, backend.registrations[instance.id]


def register_instance(api: Any, service: str, **body: Any) -> tuple[str, Any]:
    """Start an instance of ``service`` the scheduler's way and register it with its one-time
    token; return its id and a client that sends its own token."""
    instance_id, registration = start_instance(api, service)
    response = api.as_(registration).post("/api/v1/instances", json={"service": service, "host": "test", "instance_id": instance_id, **body})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"], api.as_(response.get_json()["token"])
