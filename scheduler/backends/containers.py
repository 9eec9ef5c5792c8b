"""What docker and swarm instances share: the engine connection, the runner command, binds and
labels. An instance container runs ``python -m trainfaas.services.cli instance`` from
``settings.docker_image`` (as ``settings.docker_user``, else the image's own user) with the
environment of every instance (see environment.py), and mounts only what an instance needs
(:func:`instance_binds`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def instance_binds(settings: Settings) -> list[Bind]:
    """What an instance container needs of the host, each at the same path: the executions folder
    read-write (attempts write their checkpoints and models there, and read the checkpoints and
    base models of earlier ones), the data roots read-only, and the embedded Redis' socket. Never
    the home itself: its admin token, instance secret and database stay out of every container. A
    data root that holds the home is mounted with the home hidden (see :func:`instance_mounts`);
    a data root that does not exist is left out."""
    settings.executions_dir.mkdir(parents=True, exist_ok=True)
    binds = [Bind(str(settings.executions_dir), str(settings.executions_dir))]
    home = settings.home.resolve()
    for root in settings.dataset_roots:
        if root == home:
            root = settings.datasets_dir  # the home's own data sets, not the home
        if root.is_dir() and not any(Path(b.source) == root for b in binds):
            binds.append(Bind(str(root), str(root), read_only=True))
    if settings.redis_url.startswith("unix://"):
        binds.append(Bind(settings.redis_url.removeprefix("unix://"), settings.redis_url.removeprefix("unix://")))
    return binds


def instance_mounts(settings: Settings) -> list[Mount]:
    """:func:`instance_binds`, then the configured binds (``docker_mounts``). Where a data root holds
    the home, an empty tmpfs covers the home inside the container (Docker mounts a shallower path
    first, so the executions folder and the Redis socket still show through it)."""
    binds = instance_binds(settings)
    home = settings.home.resolve()
    mounts = [bind.mount() for bind in [*binds, *parse_mounts(settings.docker_mounts)]]
    if any(Path(bind.source) in home.parents for bind in binds if bind.read_only):
        mounts.append(Mount(target=str(home), source=None, type="tmpfs", tmpfs_size=1024 * 1024, tmpfs_mode=0o755))
    return mounts


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

    def user(self) -> dict[str, str]:
        """The ``user`` argument of a container: ``settings.docker_user``, else none (the image's USER)."""
        return {"user": self.settings.docker_user} if self.settings.docker_user else {}

    def labels(self, service_name: str) -> dict[str, str]:
        """What marks a container (or swarm service) as this home's, this backend's and the service's."""
        return {LABEL_SERVICE: service_name, LABEL_HOME: str(self.settings.home), LABEL_BACKEND: self.name}
