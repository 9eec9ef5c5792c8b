"""Instances as the tasks of a Docker Swarm service: one swarm service per trainfaas service.

The swarm service ``trainfaas-<service>`` runs ``settings.docker_image`` with the same
environment, binds and limits as a docker instance (see containers.py), on the host network.
Its tasks register themselves as instances (no instance id is handed out), with their service's
swarm registration token (tokens.swarm_registration_token); the scheduler only sets the replica
count. Heartbeats decide whether an instance lives: observe()
cannot tell which task an instance is and returns None.

Scaling down keeps the scheduler's choice. The scheduler drains the instances it chose through
their heartbeat; a drained instance exits 0, and with the restart condition ``on-failure`` swarm
does not restart it. The replica count is lowered only once no more tasks run than the new count,
so swarm never picks (and stops) an instance of its own choosing; only when drained instances
outlive their drain time is it lowered anyway. A task that swarm does stop gets SIGTERM and the
service's drain time (plus a margin) as its stop grace period, so it drains like any instance.

kill() reaches a task only on the node the scheduler runs on: a task's hostname is
``trainfaas-<task id>``, which the instance reports when it registers, and the local engine can
kill that task's container. Tasks on other nodes are left alone (logged): the reaper has already
reset their work, and their next heartbeat answer tells them to drop it and stop.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime
from typing import Any

from docker.errors import NotFound
from docker.models.services import Service as SwarmService
from docker.types import Resources, RestartPolicy, ServiceMode

from trainfaas.scheduler.backends.base import Observation
from trainfaas.scheduler.backends.containers import (
    ENGINE_ERRORS,
    LABEL_HOME,
    STOP_NOW_S,
    ContainerBackend,
    instance_command,
    instance_mounts,
)
from trainfaas.scheduler.backends.environment import instance_environment
from trainfaas.scheduler.backends.instance_types import instance_type
from trainfaas.services.control.tokens import swarm_registration_token
from trainfaas.services.core.errors import BackendError
from trainfaas.services.core.settings import Settings
from trainfaas.services.store.records import Instance, Service

log = logging.getLogger(__name__)

LABEL_SPEC = "trainfaas.spec"
HOSTNAME_PREFIX = "trainfaas-"
RESTART_DELAY_S = 5.0
# How long fewer tasks may run than the count before swarm is made to start the missing ones.
SHORT_GRACE_S = 5.0
# A task gets this much longer than the service's drain time before swarm kills it.
STOP_MARGIN_S = 15.0
# Desired states of a task that runs or is about to run (swarm sets "shutdown" once it ended or goes).
LIVE_TASK_STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")


class SwarmBackend(ContainerBackend):
    """Sets the replica count of one swarm service per trainfaas service. Not thread-safe: the
    scheduler calls it from one thread. Needs a swarm manager as its Docker engine."""

    name = "swarm"
    manages_replicas = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.known: set[str] = set()  # swarm services this backend created or scaled
        self.lowering_since: dict[str, float] = {}  # service -> when a lower count began to wait for drains
        self.short_since: dict[str, float] = {}  # service -> since when fewer tasks run than its count

    @staticmethod
    def swarm_name(service_name: str) -> str:
        name = f"trainfaas-{service_name}"
        if len(name) <= 63:  # swarm service names are DNS labels
            return name
        return f"{name[:50]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"

    def spec(self, service: Service) -> dict[str, Any]:
        """The swarm service's definition (everything but the replica count). Raises ConfigError
        for an unknown instance type."""
        wanted = instance_type(self.settings, service)
        # Swarm has no device requests: GPUs are generic resources that GPU nodes advertise.
        generic = {"NVIDIA-GPU": int(wanted.gpus)} if wanted.gpus else None
        labels = self.labels(service.name)
        return dict(
            image=self.settings.docker_image, args=instance_command(service.name, self.name), labels=labels,
            container_labels=labels, env=instance_environment(self.settings, service, self.registration(service)), networks=["host"],
            hostname=HOSTNAME_PREFIX + "{{.Task.ID}}", mounts=instance_mounts(self.settings), **self.user(),
            resources=Resources(cpu_limit=int(wanted.cpus * 1e9) or None, mem_limit=int(wanted.memory_mb * 1024 * 1024) or None,
                                generic_resources=generic),
            restart_policy=RestartPolicy(condition="on-failure", delay=int(RESTART_DELAY_S * 1e9)),
            stop_signal="SIGTERM", stop_grace_period=int((service.drain_time_s + STOP_MARGIN_S) * 1e9),
        )

    def registration(self, service: Service) -> str:
        """What every task of ``service`` registers with: all tasks share one definition, so they
        cannot get the one-time tokens of other instances; see tokens.swarm_registration_token."""
        return swarm_registration_token(self.settings.instance_secret_value(), service.name)

    @staticmethod
    def fingerprint(spec: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=repr).encode()).hexdigest()[:16]

    # -- replicas ----------------------------------------------------------------------------

    def set_replicas(self, service: Service, replicas: int) -> None:
        """Run ``replicas`` tasks of ``service``: create the swarm service on first use, apply a
        changed definition, and set the count (a lower one once drained tasks have exited).
        Raises BackendError."""
        try:
            self._set_replicas(service, max(0, replicas))
        except ENGINE_ERRORS as exc:
            raise BackendError(f"swarm: cannot scale {self.swarm_name(service.name)} to {replicas}: {exc}") from exc

    def _set_replicas(self, service: Service, replicas: int) -> None:
        spec = self.spec(service)
        fingerprint = self.fingerprint(spec)
        spec["labels"] = {**spec["labels"], LABEL_SPEC: fingerprint}
        current = self._find(service.name)
        self.known.add(service.name)
        if current is None:
            if replicas:
                self.client.services.create(name=self.swarm_name(service.name), mode=ServiceMode("replicated", replicas), **spec)
                log.info("swarm: created %s with %d replicas", self.swarm_name(service.name), replicas)
            return
        count = self._count_to_set(service, current, replicas)
        if count is None:
            return
        if current.attrs["Spec"].get("Labels", {}).get(LABEL_SPEC) != fingerprint:
            current.update(mode=ServiceMode("replicated", count), **spec)
            log.info("swarm: updated the definition of %s (%d replicas)", current.name, count)
        elif count != self._replicas(current) or self._short_for_long(service, current, count):
            # The same count again is not idle: it makes swarm replace tasks that drained and exited
            # while the scheduler still wanted them (they are not restarted on their own).
            current.scale(count)
            log.info("swarm: %s set to %d replicas", current.name, count)

    def _count_to_set(self, service: Service, current: SwarmService, replicas: int) -> int | None:
        """The count to set now: ``replicas``, or None (change nothing yet) while that is lower than
        the current count and more tasks still run (drained ones finishing), for at most the drain
        time. Any update meanwhile would make swarm replace the drained tasks that already exited."""
        have = self._replicas(current)
        live = self._live_tasks(current)
        if replicas >= have or live <= replicas:
            self.lowering_since.pop(service.name, None)
            return replicas
        since = self.lowering_since.setdefault(service.name, time.monotonic())
        if time.monotonic() - since <= service.drain_time_s + STOP_MARGIN_S:
            log.info("swarm: %s keeps %d replicas until %d drained tasks exit (wants %d)", current.name, have, live - replicas, replicas)
            return None
        log.warning("swarm: %s: %d tasks outlived their drain time; lowering to %d, swarm picks which stop",
                    current.name, live - replicas, replicas)
        self.lowering_since.pop(service.name, None)
        return replicas

    def _short_for_long(self, service: Service, current: SwarmService, count: int) -> bool:
        """Whether fewer than ``count`` tasks have been running for longer than swarm takes to
        replace a failed one by itself (then a task exited 0 and is not coming back)."""
        if self._live_tasks(current) >= count:
            self.short_since.pop(service.name, None)
            return False
        since = self.short_since.setdefault(service.name, time.monotonic())
        if time.monotonic() - since < RESTART_DELAY_S + SHORT_GRACE_S:
            return False
        self.short_since.pop(service.name, None)
        return True

    def _find(self, service_name: str) -> SwarmService | None:
        """The swarm service of ``service_name``; BackendError if another trainfaas owns the name."""
        try:
            found = self.client.services.get(self.swarm_name(service_name))
        except NotFound:
            return None
        owner = found.attrs["Spec"].get("Labels", {}).get(LABEL_HOME)
        if owner != str(self.settings.home):
            raise BackendError(f"swarm service {found.name} belongs to another trainfaas (home {owner}); remove it or use another swarm")
        return found

    @staticmethod
    def _replicas(current: SwarmService) -> int:
        return int(current.attrs["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas", 0))

    @staticmethod
    def _live_tasks(current: SwarmService) -> int:
        return sum(1 for task in current.tasks() if task.get("DesiredState") in LIVE_TASK_STATES)

    def failures(self, service: Service, since: float) -> list[tuple[float, str]]:
        """Tasks that failed or were rejected: a crash-looping replica never registers, so only
        swarm knows of it."""
        current = self._find(service.name)
        if current is None:
            return []
        found = []
        for task in current.tasks():
            status = task.get("Status", {})
            if status.get("State") not in ("failed", "rejected"):
                continue
            at = _epoch(status.get("Timestamp", ""))
            if at > since:
                exit_code = status.get("ContainerStatus", {}).get("ExitCode")
                found.append((at, status.get("Err") or f"exit code {exit_code}"))
        return sorted(found)

    # -- single instances ----------------------------------------------------------------------

    def start(self, service: Service, instance: Instance, registration: str) -> None:
        raise BackendError("the swarm backend starts instances through set_replicas, not one by one")

    def observe(self, instance: Instance) -> Observation | None:
        return None  # which task is which instance is not known here; heartbeats decide

    def stop(self, instance: Instance) -> None:
        """The scheduler drains swarm instances through their heartbeat; this also sends SIGTERM
        where the task runs on this node."""
        self._signal(instance, "SIGTERM")

    def kill(self, instance: Instance) -> None:
        """SIGKILL the instance's task container if it runs on this node (swarm then replaces it:
        it failed); elsewhere only logged."""
        self._signal(instance, "SIGKILL")

    def _signal(self, instance: Instance, sig: str) -> None:
        task_id = instance.host.removeprefix(HOSTNAME_PREFIX) if instance.host.startswith(HOSTNAME_PREFIX) else ""
        try:
            task = next(iter(self.client.api.tasks(filters={"id": task_id})), None) if task_id else None
            if task is None:
                log.info("swarm: instance %s (host %s) is no task of this swarm; %s not sent", instance.id, instance.host, sig)
                return
            container_id = task.get("Status", {}).get("ContainerStatus", {}).get("ContainerID")
            if task.get("NodeID") != self.client.info()["Swarm"].get("NodeID") or not container_id:
                log.warning("swarm: instance %s runs in task %s on node %s, out of this node's reach; %s not sent "
                            "(its heartbeat answer makes it stop)", instance.id, task_id, task.get("NodeID"), sig)
                return
            self.client.containers.get(container_id).kill(signal=sig)
        except ENGINE_ERRORS as exc:
            log.info("swarm: instance %s: %s not delivered: %s", instance.id, sig, exc)

    # -- shutdown ---------------------------------------------------------------------------

    def close(self, timeout_s: float) -> None:
        """Scale this backend's swarm services to 0 (their tasks get SIGTERM and drain), wait up to
        ``timeout_s``, send the local tasks that still run a second SIGTERM (reset what is left
        and exit), then remove the services."""
        try:
            services = [found for name in self.known if (found := self._find(name)) is not None]
            for found in services:
                found.scale(0)
            still = self._wait_stopped(services, timeout_s)
            for container in still:
                container.kill(signal="SIGTERM")
            self._wait_stopped(services, STOP_NOW_S)
            for found in services:
                found.remove()
                log.info("swarm: removed %s", found.name)
        except (*ENGINE_ERRORS, BackendError) as exc:
            log.warning("swarm: cannot close its services: %s", exc)
        self.known.clear()

    def _wait_stopped(self, services: list[SwarmService], wait_s: float) -> list[Any]:
        """Wait up to ``wait_s`` for the services' task containers on this node to stop; return those
        still running."""
        deadline = time.monotonic() + wait_s
        names = [f"com.docker.swarm.service.name={found.name}" for found in services]
        while True:
            running = [c for name in names for c in self.client.containers.list(filters={"label": name})]
            if not running or time.monotonic() >= deadline:
                return running
            time.sleep(0.2)


def _epoch(timestamp: str) -> float:
    """Docker's RFC 3339 time with nanoseconds ("2026-11-23T12:00:00.123456789Z") as epoch seconds."""
    if not timestamp:
        return 0.0
    head, _, fraction = timestamp.rstrip("Z").partition(".")
    fraction = (fraction.split("+")[0].split("-")[0] + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{fraction}+00:00").timestamp()
