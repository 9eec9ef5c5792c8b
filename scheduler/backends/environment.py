"""The environment of an instance: one builder that every backend uses.

An instance reads its settings from ``TRAINFAAS_*`` variables (``load_settings``). It gets what
it needs to reach Redis and the API and to register, never the database URL, the instance
secret or a user's token; plus the thread count and GPU visibility of its instance type.

The registration token is part of that environment for containers (docker, swarm); the process
backend takes it out (:func:`separate_token`) and hands it through a pipe instead, so that it is in
no process' /proc/<pid>/environ.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from trainfaas.scheduler.backends.instance_types import instance_type
from trainfaas.services.core.settings import Settings
from trainfaas.services.store.records import Service

PREFIX = "TRAINFAAS_"
# The settings an instance runs with, as the scheduler has them.
INSTANCE_SETTINGS = ("home", "redis_url", "api_url", "adapters", "log_format", "heartbeat_interval_s", "work_user", "work_isolation",
                     "data_roots", "usage_interval_s", "keep_freed_memory")
REGISTRATION_TOKEN = PREFIX + "REGISTRATION_TOKEN"
REGISTRATION_TOKEN_FD = PREFIX + "REGISTRATION_TOKEN_FD"  # an inherited descriptor the token is read from


def as_variable(value: Any) -> str:
    """A setting's value as pydantic-settings reads it back: JSON for mappings and lists."""
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def settings_environment(settings: Settings, names: Iterable[str]) -> dict[str, str]:
    """The settings ``names`` as ``TRAINFAAS_<NAME>`` variables."""
    return {PREFIX + name.upper(): as_variable(getattr(settings, name)) for name in names}


def instance_environment(settings: Settings, service: Service, registration: str) -> dict[str, str]:
    """The variables trainfaas sets for an instance of ``service`` (a backend adds them to the
    rest of the environment it starts the instance in), ``registration`` being the token it
    registers with (see FleetKeeper.start_instance). Raises ConfigError for an unknown
    instance type."""
    env = instance_type(settings, service).environment()
    env.update(settings_environment(settings, INSTANCE_SETTINGS))
    env[REGISTRATION_TOKEN] = registration
    env["PYTHONUNBUFFERED"] = "1"  # the instance's log is read while it runs
    return env


def without_settings(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` less its ``TRAINFAAS_*`` variables: a process instance inherits the rest, not
    the scheduler's own settings (its database URL among them)."""
    return {name: value for name, value in environ.items() if not name.startswith(PREFIX)}


def separate_token(env: dict[str, str]) -> tuple[dict[str, str], str]:
    """``env`` less its registration token, and the token: for a backend that hands the token to
    the instance another way (the process backend: a pipe named by REGISTRATION_TOKEN_FD)."""
    rest = dict(env)
    return rest, rest.pop(REGISTRATION_TOKEN, "")
