"""Instances as Docker containers: one container per instance, on the engine that DOCKER_HOST
(or the local socket) names.

Each container runs ``python -m trainfaas.services.cli instance`` from ``settings.docker_image`` on the
host network, with the instance's settings in its environment (never the database URL), only
what an instance needs of the home bind-mounted at the same paths (the executions folder
read-write, the data roots read-only, the embedded Redis socket: containers.instance_binds), the
binds of ``settings.docker_mounts``, and the limits of the service's instance type. Memory
is limited without swap, so a work process that grows past the limit is OOM-killed inside the
container, where the instance notices it.

Containers carry labels (``trainfaas.service``, ``trainfaas.instance``, ``trainfaas.home``), so
a scheduler that restarts finds the containers of its instances again. A container that has
exited is removed once its exit has been observed; its output is kept in
``home/logs/instance-<id>.log`` first.
"""
from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterable
from typing import Any

from docker.errors import ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest

from trainfaas.scheduler.backends.base import Observation
from trainfaas.scheduler.backends.containers import (
    ENGINE_ERRORS,
    LABEL_BACKEND,
    LABEL_HOME,
    LABEL_INSTANCE,
    STOP_NOW_S,
    ContainerBackend,
    explain,
    instance_command,
    instance_mounts,
)
from trainfaas.scheduler.backends.environment import instance_environment
from trainfaas.scheduler.backends.instance_types import instance_type
from trainfaas.services.core.errors import BackendError
from trainfaas.services.core.settings import Settings
from trainfaas.services.store.records import Instance, Service

log = logging.getLogger(__name__)

# How often observe() and start() look for exited containers to collect.
SWEEP_INTERVAL_S = 5.0
RUNNING_STATES = ("created", "running", "restarting", "paused")


def exit_observation(state: dict[str, Any]) -> Observation:
    """How a container ended, from its inspected ``State``."""
    code = int(state.get("ExitCode", -1))
    if code == 0:
        return Observation(False, "exited cleanly (code 0)", False)
    if state.get("OOMKilled"):
        # Docker marks any OOM kill inside the container; with a non-zero exit it was the instance itself.
        return Observation(False, f"OOMKilled: the container ran out of memory and the kernel killed it (exit code {code})", True)
    reason = f"exit code {code}"
    if code > 128:
        try:
            reason += f" (killed by {signal.Signals(code - 128).name})"
        except ValueError:
            pass
    if state.get("Error"):
        reason += f": {state['Error']}"
    return Observation(False, reason, True)


# -- the backend ------------------------------------------------------------------------------------


class DockerBackend(ContainerBackend):
    """One container per instance. Not thread-safe: the scheduler calls it from one thread."""

    name = "docker"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.containers: dict[str, str] = {}  # instance id -> container id (started or adopted)
        self.ended: dict[str, Observation] = {}  # exits seen before the reaper asked
        self.last_sweep = 0.0

    def container_name(self, service: Service, instance: Instance) -> str:
        return f"trainfaas-{service.name}-{instance.id[:8]}"

    def limits(self, service: Service) -> dict[str, Any]:
        """Container limits from the instance type: memory without swap, CPUs at most the engine's,
        GPUs as device requests (all of them for a type that names no count, where the engine has
        the NVIDIA runtime)."""
        wanted = instance_type(self.settings, service)
        info = self.client.info()
        limits: dict[str, Any] = {}
        if wanted.cpus:
            limits["nano_cpus"] = int(min(wanted.cpus, float(info.get("NCPU") or wanted.cpus)) * 1e9)
        if wanted.memory_mb:
            limits["mem_limit"] = limits["memswap_limit"] = int(wanted.memory_mb * 1024 * 1024)
        gpus = wanted.gpus
        if gpus is None and "nvidia" in (info.get("Runtimes") or {}):
            gpus = -1.0  # Docker's "all"
        if gpus:
            limits["device_requests"] = [DeviceRequest(count=int(gpus), capabilities=[["gpu"]])]
        return limits

    def start(self, service: Service, instance: Instance, registration: str) -> None:
        """Create and start the instance's container. Idempotent; raises BackendError, and
        ConfigError for an unknown instance type (before the engine is asked)."""
        environment = instance_environment(self.settings, service, registration)
        try:
            self._sweep()
            if self._find(instance) is None:
                self._create(service, instance, environment).start()
        except ImageNotFound as exc:
            raise BackendError(f"image {self.settings.docker_image} is not on the Docker engine; build it (deploy/Dockerfile.runner) "
                               "or pull it, or set TRAINFAAS_DOCKER_IMAGE") from exc
        except ENGINE_ERRORS as exc:
            self._discard(instance)
            raise BackendError(f"cannot start a container for instance {instance.id}: {explain(exc)}") from exc
        log.info("started instance %s of %s in container %s", instance.id, service.name, self.container_name(service, instance))

    def _create(self, service: Service, instance: Instance, environment: dict[str, str]) -> Container:
        container = self.client.containers.create(
            self.settings.docker_image, instance_command(service.name, self.name, instance.id),
            name=self.container_name(service, instance), labels={**self.labels(service.name), LABEL_INSTANCE: instance.id},
            environment=environment, network_mode="host", mounts=instance_mounts(self.settings), stop_signal="SIGTERM",
            **self.user(), **self.limits(service))
        self.containers[instance.id] = container.id
        return container

    def _discard(self, instance: Instance) -> None:
        """Remove a container that was created but did not start: it would look alive forever."""
        container_id = self.containers.pop(instance.id, None)
        if container_id is None:
            return
        try:
            self.client.containers.get(container_id).remove(force=True)
        except ENGINE_ERRORS:
            log.warning("container %s of instance %s could not be removed", container_id[:12], instance.id)

    def stop(self, instance: Instance) -> None:
        """SIGTERM: the instance drains and exits. Returns at once."""
        self._signal(instance, "SIGTERM")

    def kill(self, instance: Instance) -> None:
        self._signal(instance, "SIGKILL")

    def _signal(self, instance: Instance, sig: str) -> None:
        try:
            container = self._find(instance)
            if container is not None and container.status in RUNNING_STATES:
                container.kill(signal=sig)
        except (*ENGINE_ERRORS, BackendError) as exc:  # gone meanwhile, or not running: nothing to signal
            log.info("instance %s: %s not delivered: %s", instance.id, sig, explain(exc))

    def observe(self, instance: Instance) -> Observation | None:
        """Alive while its container runs; how it ended once it exited (then the container is
        removed); None while the engine cannot be reached (heartbeats decide)."""
        try:
            self._sweep()
            container = self._find(instance)
        except (*ENGINE_ERRORS, BackendError) as exc:
            log.warning("instance %s: the Docker engine does not answer (%s); heartbeats decide", instance.id, explain(exc))
            return None
        if container is None:
            return self.ended.pop(instance.id, None) or Observation(
                False, "container gone (removed outside trainfaas; exit status unknown)", True)
        if container.status in RUNNING_STATES:
            return Observation(True)
        observation = self._collect(instance.id, container)
        self.ended.pop(instance.id, None)
        return observation

    def _find(self, instance: Instance) -> Container | None:
        """The instance's container: the one started or adopted, else the one its label names."""
        known = self.containers.get(instance.id)
        if known is not None:
            try:
                return self.client.containers.get(known)
            except NotFound:
                del self.containers[instance.id]
        found = self.client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={instance.id}"})
        if found:
            self.containers[instance.id] = found[0].id
            log.info("instance %s: adopted container %s", instance.id, found[0].short_id)
            return found[0]
        return None

    def _collect(self, instance_id: str, container: Container) -> Observation:
        """Keep the output of an exited container, remove it, and say how it ended."""
        observation = exit_observation(container.attrs.get("State", {}))
        logs = self.settings.home / "logs"
        try:
            logs.mkdir(parents=True, exist_ok=True)
            with open(logs / f"instance-{instance_id}.log", "ab") as out:
                out.write(container.logs(stdout=True, stderr=True))
            container.remove(force=True)
        except (*ENGINE_ERRORS, OSError) as exc:
            log.warning("instance %s: container %s not collected: %s", instance_id, container.short_id, exc)
        self.containers.pop(instance_id, None)
        log.info("instance %s: container %s ended: %s", instance_id, container.short_id, observation.exit_reason)
        return observation

    def _sweep(self) -> None:
        """Collect exited containers of this home, e.g. of instances that drained and deregistered
        (the reaper no longer asks about those). Their exits stay in ``ended`` for observe()."""
        if time.monotonic() - self.last_sweep < SWEEP_INTERVAL_S:
            return
        self.last_sweep = time.monotonic()
        filters = {"label": [f"{LABEL_HOME}={self.settings.home}", f"{LABEL_BACKEND}={self.name}"], "status": ["exited", "dead"]}
        for container in self.client.containers.list(all=True, filters=filters):
            instance_id = container.labels.get(LABEL_INSTANCE, "")
            self.ended[instance_id] = self._collect(instance_id, container)
        while len(self.ended) > 1000:  # exits nobody asked about (rows already ended)
            self.ended.pop(next(iter(self.ended)))

    def close(self, timeout_s: float) -> None:
        """SIGTERM (drain) every container this backend started or adopted; after ``timeout_s`` a
        second SIGTERM makes them reset what is left and exit; SIGKILL for one that still hangs.
        Then remove them."""
        if not self.containers:
            return
        try:
            self._close(timeout_s)
        except (*ENGINE_ERRORS, BackendError) as exc:
            log.warning("docker backend: cannot close its containers: %s", explain(exc))

    def _close(self, timeout_s: float) -> None:
        present = {c.id: c for c in self.client.containers.list(all=True, filters={"label": LABEL_INSTANCE})}
        owned = {instance_id: present[cid] for instance_id, cid in self.containers.items() if cid in present}
        self._signal_all(owned.values(), "SIGTERM")
        for wait_s, sig in ((timeout_s, "SIGTERM"), (STOP_NOW_S, "SIGKILL"), (STOP_NOW_S, None)):
            running = _wait_exited(list(owned.values()), wait_s)
            if not running:
                break
            if sig is not None:
                self._signal_all(running, sig)
        for instance_id, container in owned.items():
            self._collect(instance_id, container)

    @staticmethod
    def _signal_all(containers: Iterable[Container], sig: str) -> None:
        for container in containers:
            try:
                container.kill(signal=sig)
            except ENGINE_ERRORS as exc:  # exited meanwhile
                log.debug("container %s: %s not delivered: %s", container.short_id, sig, explain(exc))


def _wait_exited(containers: list[Container], wait_s: float) -> list[Container]:
    """Wait up to ``wait_s`` for the containers to exit; return those still running."""
    deadline = time.monotonic() + wait_s
    while True:
        running = []
        for container in containers:
            try:
                container.reload()
            except NotFound:
                continue
            if container.status in RUNNING_STATES:
                running.append(container)
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.2)
