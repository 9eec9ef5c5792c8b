"""Instance backends: where an instance runs. One base class, one file per backend."""
from __future__ import annotations

from importlib import import_module

from scheduler.backends.base import InstanceBackend, Observation
from services.config import Settings
from services.errors import ConfigError

__all__ = ["InstanceBackend", "Observation", "create", "create_all"]

BACKENDS = {
    "process": "scheduler.backends.process:ProcessBackend",
    "docker": "scheduler.backends.docker:DockerBackend",
    "swarm": "scheduler.backends.swarm:SwarmBackend",
    "memory": "scheduler.backends.memory:MemoryBackend",
}


def create(name: str, settings: Settings) -> InstanceBackend:
    """Build the backend called ``name``; its module (and SDK) is imported only here."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown instance backend {name!r}", {"TRAINFAAS_BACKENDS": f"names from: {', '.join(BACKENDS)}"})
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(import_module(module), cls)(settings)  # type: ignore[no-any-return]


def create_all(settings: Settings) -> list[InstanceBackend]:
    """The process backend plus every backend named in ``settings.backends``."""
    names = ["process"] + [n.strip() for n in settings.backends.split(",") if n.strip() and n.strip() != "process"]
    return [create(name, settings) for name in names]
