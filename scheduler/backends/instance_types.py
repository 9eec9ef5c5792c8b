"""Instance types: the named resource profiles (``settings.instance_types``) a service runs on.

Every backend reads a service's type through :func:`instance_type`, so an unknown type is the
same error everywhere. Docker and swarm turn a type into container limits; every backend hands
its thread count (and a hidden GPU list) to the instance through its environment.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from trainfaas.services.core.errors import ConfigError
from trainfaas.services.core.settings import Settings
from trainfaas.services.store.records import Service


@dataclass(frozen=True)
class InstanceType:
    """One profile: 0 ``cpus`` or ``memory_mb`` means no limit; ``gpus`` None (not given) means
    every GPU the host has."""

    cpus: float = 0.0
    memory_mb: float = 0.0
    gpus: float | None = None

    @property
    def threads(self) -> int | None:
        """Threads a work process should use (torch, BLAS): the CPUs rounded up; None: no limit."""
        return max(1, math.ceil(self.cpus)) if self.cpus else None

    def environment(self) -> dict[str, str]:
        """Thread counts for ``cpus``, and no visible GPU for ``gpus: 0``."""
        env = {}
        if self.threads is not None:
            env.update(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads), OPENBLAS_NUM_THREADS=str(self.threads))
        if self.gpus == 0:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env


def instance_type(settings: Settings, service: Service) -> InstanceType:
    """The type ``service`` runs on. Raises ConfigError, naming the field and the known types,
    when this scheduler does not know it."""
    found = settings.instance_types.get(service.instance_type)
    if found is None:
        known = ", ".join(sorted(settings.instance_types))
        raise ConfigError(f"service {service.name} wants instance type {service.instance_type!r}, which this scheduler does not "
                          f"know (known: {known}); set TRAINFAAS_INSTANCE_TYPES alike for the API and the scheduler",
                          {"instance_type": f"one of: {known}"})
    gpus = found.get("gpus")
    return InstanceType(float(found.get("cpus", 0)), float(found.get("memory_mb", 0)), None if gpus is None else float(gpus))
