"""The InstanceBackend contract."""
from __future__ import annotations

from dataclasses import dataclass

from trainfaas.services.core.settings import Settings
from trainfaas.services.store.records import Instance, Service


@dataclass(frozen=True)
class Observation:
    """What a backend sees of one instance. ``exit_reason`` is set once it is gone."""

    alive: bool
    exit_reason: str | None = None
    failed: bool = False  # gone abnormally (crash, signal, OOM) rather than a clean exit


class InstanceBackend:
    """Starts, stops and observes instances. Implementations must be idempotent per instance id.

    Two kinds exist. Backends that manage single instances (process, docker) get ``start`` for
    an instance row the scheduler created, and ``stop``/``kill`` for one it chose. Backends that
    manage a replica count (swarm) set ``manages_replicas = True`` and get ``set_replicas``;
    their instances register themselves, and the scheduler drains the ones it chose to remove
    through their heartbeat before it lowers the count.
    """

    name = "base"
    manages_replicas = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def start(self, service: Service, instance: Instance, registration: str) -> None:
        """Launch ``instance`` (its row exists, status initializing) with ``registration``, the
        one-time token it registers with (only its hash is on the row). Raises BackendError."""
        raise NotImplementedError

    def stop(self, instance: Instance) -> None:
        """Ask the instance to drain and exit (SIGTERM). Returns at once."""
        raise NotImplementedError

    def kill(self, instance: Instance) -> None:
        """Stop the instance at once. Its running attempts are reset by the caller."""
        raise NotImplementedError

    def observe(self, instance: Instance) -> Observation | None:
        """What the backend sees of ``instance``; None when it cannot tell (heartbeats decide)."""
        raise NotImplementedError

    def failures(self, service: Service, since: float) -> list[tuple[float, str]]:
        """(time, reason) of instances of ``service`` that failed after ``since`` and that the
        database cannot know of (a replica that crashed before it registered). Default: none."""
        return []

    def set_replicas(self, service: Service, replicas: int) -> None:
        """For ``manages_replicas`` backends: run ``replicas`` instances of ``service``."""
        raise NotImplementedError

    def close(self, timeout_s: float) -> None:
        """Stop every instance this backend started and wait up to ``timeout_s`` for them."""
