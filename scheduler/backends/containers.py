"""What docker and swarm instances share: the engine connection, the runner command, binds and
labels. An instance container runs ``python -m trainfaas.services.cli instance`` from
``settings.docker_image`` with the environment of every instance (see environment.py)."""
from __future__ import annotations

from dataclasses import dataclass

import docker
import requests
from docker.errors import APIError, DockerException
from docker.types import Mount

from trainfaas.scheduler.backends.base import InstanceBackend
from trainfaas.services.core.errors import BackendError
from trainfaas.services.core.settings import Settings

# What a call to the engine raises when it fails: the SDK's errors, and transport errors (an
# engine that went away after the client was made).
ENGINE_ERRORS = (DockerException, requests.RequestException)

LABEL_SERVICE = "trainfaas.service"
LABEL_INSTANCE = "trainfaas.instance"
LABEL_HOME = "trainfaas.home"
LABEL_BACKEND = "trainfaas.backend"

# After close()'s drain time and second SIGTERM, how long a container may take to reset and exit.
STOP_NOW_S = 15.0


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    read_only: bool = False

    def mount(self) -> Mount:
        return Mount(target=self.target, source=self.source, type="bind", read_only=self.read_only)


def parse_mounts(spec: str) -> list[Bind]:
    """``host:container[:ro|rw],...`` (the ``docker_mounts`` setting) as binds. Raises BackendError."""
    binds = []
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        fields = entry.split(":")
        mode = fields.pop() if len(fields) == 3 else "rw"
        if len(fields) != 2 or mode not in ("ro", "rw") or not all(f.startswith("/") for f in fields):
            raise BackendError(f"docker_mounts entry {entry!r} must look like /host/path:/container/path[:ro]",
                               {"TRAINFAAS_DOCKER_MOUNTS": spec})
        binds.append(Bind(fields[0], fields[1], mode == "ro"))
    return binds


def instance_mounts(settings: Settings) -> list[Mount]:
    """The home folder at the same path (read-write), then the configured binds."""
    return [bind.mount() for bind in [Bind(str(settings.home), str(settings.home)), *parse_mounts(settings.docker_mounts)]]


# The instance reports the backend that runs it when it registers (--backend); the reaper then
# asks that backend about the instance.
def instance_command(service_name: str, backend: str, instance_id: str | None = None) -> list[str]:
    """The command of an instance container: ``python -m trainfaas.services.cli instance --service ...``."""
    command = ["python", "-m", "trainfaas.services.cli", "instance", "--service", service_name]
    if instance_id:
        command += ["--instance-id", instance_id]
    return command + ["--backend", backend]


def connect() -> docker.DockerClient:
    """A client of the engine named by the environment (DOCKER_HOST, or the local socket)."""
    try:
        return docker.from_env()
    except ENGINE_ERRORS as exc:
        raise BackendError(f"no Docker engine answers: {exc}; start dockerd or set DOCKER_HOST") from exc


def explain(exc: Exception) -> str:
    """The engine's own explanation of a failed call, else the error's text."""
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc)


class ContainerBackend(InstanceBackend):
    """A backend whose instances are containers of one Docker engine, reached on first use."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect()
        return self._client

    def labels(self, service_name: str) -> dict[str, str]:
        """What marks a container (or swarm service) as this home's, this backend's and the service's."""
        return {LABEL_SERVICE: service_name, LABEL_HOME: str(self.settings.home), LABEL_BACKEND: self.name}
