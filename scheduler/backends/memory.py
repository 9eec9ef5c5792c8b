"""An in-memory twin of an instance backend, for tests of fleet logic without processes.

Given settings, it refuses an unknown instance type as every backend does."""
from __future__ import annotations

from trainfaas.scheduler.backends.base import InstanceBackend, Observation
from trainfaas.scheduler.backends.instance_types import instance_type
from trainfaas.services.core.settings import Settings
from trainfaas.services.store.records import Instance, Service


class MemoryBackend(InstanceBackend):
    name = "memory"

    def __init__(self, settings: Settings | None = None) -> None:  # type: ignore[override]
        self.settings = settings  # type: ignore[assignment]
        self.replicas: dict[str, int] = {}
        self.started: list[str] = []
        self.registrations: dict[str, str] = {}  # instance id -> the registration token it was started with
        self.stopped: list[str] = []
        self.killed: list[str] = []
        self.dead: dict[str, str] = {}

    def _check(self, service: Service) -> None:
        if self.settings is not None:
            instance_type(self.settings, service)

    def start(self, service: Service, instance: Instance, registration: str = "") -> None:
        self._check(service)
        self.started.append(instance.id)
        self.registrations[instance.id] = registration

    def stop(self, instance: Instance) -> None:
        self.stopped.append(instance.id)

    def kill(self, instance: Instance) -> None:
        self.killed.append(instance.id)
        self.dead[instance.id] = "killed"

    def observe(self, instance: Instance) -> Observation:
        if instance.id in self.dead:
            return Observation(False, self.dead[instance.id], failed=True)
        return Observation(True)

    def set_replicas(self, service: Service, replicas: int) -> None:
        self._check(service)
        self.replicas[service.name] = replicas

    def close(self, timeout_s: float) -> None:
        self.stopped.extend(self.started)
