"""Instance backends: where an instance runs. One base class, one file per backend."""
from __future__ import annotations

from trainfaas.scheduler.backends.base import InstanceBackend, Observation
from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.references import resolve
from trainfaas.services.core.settings import Settings

__all__ = ["InstanceBackend", "Observation", "create", "create_all"]

BACKENDS = {
    "process": "trainfaas.scheduler.backends.process:ProcessBackend",
    "docker": "trainfaas.scheduler.backends.docker:DockerBackend",
    "swarm": "trainfaas.scheduler.backends.swarm:SwarmBackend",
    "memory": "trainfaas.scheduler.backends.memory:MemoryBackend",
}


def create(name: str, settings: Settings) -> InstanceBackend:
    """Build the backend called ``name``; its module (and SDK) is imported only here."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown instance backend {name!r}", {"TRAINFAAS_BACKENDS": f"names from: {', '.join(BACKENDS)}"})
    return resolve(BACKENDS[name], "instance backend")(settings)  # type: ignore[no-any-return]


def create_all(settings: Settings) -> list[InstanceBackend]:
    """The process backend plus every backend named in ``settings.backends``."""
    names = ["process"] + [n.strip() for n in settings.backends.split(",") if n.strip() and n.strip() != "process"]
    return [create(name, settings) for name in names]
