"""The local stack that ``trainfaas up`` (and the demo and the tests) run: embedded Redis, the
database, the API under gunicorn, and the scheduler with its instances.

Stop order matters: instances first (they report their last results through the API), then the
scheduler, then the API, then Redis.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from trainfaas.adapters.architectures import cache_is_current
from trainfaas.scheduler.backends import create_all
from trainfaas.scheduler.backends.environment import settings_environment
from trainfaas.scheduler.daemon import Scheduler
from trainfaas.services.control.tokens import ensure_admin_token
from trainfaas.services.core.errors import Unavailable
from trainfaas.services.core.processes import ending_with_this_thread
from trainfaas.services.core.settings import Settings
from trainfaas.services.local.embedded_redis import EmbeddedRedis
from trainfaas.services.sdk.client import Client
from trainfaas.services.store.database import open_database
from trainfaas.services.store.migrations import migrate

log = logging.getLogger("trainfaas.stack")

# The settings the API (and the architecture catalog's warmer) run with, as the stack has them.
API_SETTINGS = ("home", "database_url", "redis_url", "api_url", "adapters", "log_format", "data_roots", "max_body_bytes", "api_workers",
                "api_threads", "instance_types", "backends", "project_max_queued", "project_max_running", "max_timeout_s",
                "diagnostics", "diagnostics_max_allocate_mb", "new_service_min_instances", "new_service_max_instances",
                "webhook_allow_private", "webhook_allow_hosts", "webhook_max_per_project")


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: EmbeddedRedis | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.scheduler: Scheduler | None = None
        self.admin_token = ""  # read from, or written to, home/admin-token on start
        self._umask: int | None = None  # the umask before start, put back by stop

    def start(self) -> Stack:
        # The database, logs, tokens and models are the owner's alone: every file and directory
        # the stack and the processes it starts create is private (umask 077), home too (0700).
        self._umask = os.umask(0o077)
        self.settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.settings.embedded_redis:
            self.redis = EmbeddedRedis(Path(self.settings.redis_url.removeprefix("unix://")))
            self.redis.start()
        open_database(self.settings.database_url)
        migrate()
        self.admin_token = ensure_admin_token(self.settings.admin_token_path)
        self.start_api()
        self.start_scheduler()
        self.warm_architecture_catalog()
        return self

    def warm_architecture_catalog(self) -> None:
        """Measure the architectures in the background unless the cache is current, so that the
        first ``trainfaas architectures`` answers at once. Runs at low priority and is never waited for."""
        if cache_is_current():
            return
        subprocess.Popen(
            ["nice", "-n", "10", sys.executable, "-m", "trainfaas.adapters.architectures", self.settings.adapters],
            env=self.environment(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=ending_with_this_thread(),
        )

    def environment(self) -> dict[str, str]:
        """The environment of the stack's API and helper processes: this one's, with the stack's settings."""
        return {**os.environ, **settings_environment(self.settings, API_SETTINGS), "TRAINFAAS_BIND": f"{self.settings.host}:{self.settings.port}"}

    def start_api(self, timeout_s: float = 60.0) -> None:
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "api.log", "ab") as out:
            self.api = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:trainfaas.deploy.gunicorn_conf", "trainfaas.services.api.wsgi:app"],
                env=self.environment(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=ending_with_this_thread(),  # gunicorn ends with the stack, even one killed hard
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise Unavailable(f"the API exited with code {self.api.returncode}; see {logs / 'api.log'}")
            try:
                if requests.get(f"{self.settings.api_url}/healthz", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise Unavailable(f"the API did not answer on {self.settings.api_url} within {timeout_s:.0f} s")

    def start_scheduler(self) -> None:
        # Its process instances end with it, as the embedded Redis and the API do.
        default, *extra = create_all(self.settings.model_copy(update={"instances_end_with_scheduler": True}))
        self.scheduler = Scheduler(self.settings, default, extra_backends=extra)
        self.scheduler.start()

    def admin_client(self) -> Client:
        """An SDK client of this stack's API with the admin token."""
        return Client(self.settings.api_url, self.admin_token)

    def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Stop everything; running executions get ``drain_timeout_s`` to finish, then are reset."""
        if self.scheduler is not None:
            self.scheduler.shutdown(drain_timeout_s)
            self.scheduler = None
        if self.api is not None and self.api.poll() is None:
            self.api.terminate()
            try:
                self.api.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.api.kill()
                self.api.wait()
        self.api = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self._umask is not None:
            os.umask(self._umask)
            self._umask = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
