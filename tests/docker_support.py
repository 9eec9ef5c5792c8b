"""A runner image for the Docker tests, made without a registry.

``docker import`` turns a tarball of a few empty folders into the image ``trainfaas-runner:test``;
the containers then bind-mount, read-only, the host's system folders, the Python installation
the project's virtual environment was made from, and the project itself with that environment.
So a container runs exactly the code and packages of the test run, and imports trainfaas as an
installation does: through the environment's (editable) install, not a PYTHONPATH. The image records what it
was made for in a label and is made again when that changes (another checkout, another venv).
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

import docker

IMAGE = "trainfaas-runner:test"
KEY_LABEL = "trainfaas.runner.key"
SYSTEM_DIRS = ("/usr", "/etc")
TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")  # symlinks into /usr on merged-/usr systems
EMPTY_DIRS = ("tmp", "var/tmp", "proc", "sys", "dev", "etc", "usr", "root", "run", "home")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def python_dirs() -> list[Path]:
    """The Python installation behind the venv's interpreter, the project and the venv itself."""
    return [Path(os.path.realpath(sys.base_prefix)), repo_root(), Path(sys.prefix).resolve()]


def read_only_dirs() -> list[str]:
    """Host folders every runner container mounts read-only, at the same paths."""
    dirs = [*SYSTEM_DIRS, *(f"/{top}" for top in TOP_LEVEL if Path(f"/{top}").is_dir() and not Path(f"/{top}").is_symlink())]
    for path in python_dirs():
        if not any(path == Path(d) or Path(d) in path.parents for d in dirs):
            dirs.append(str(path))
    return dirs


def docker_mounts() -> str:
    """The ``docker_mounts`` setting for runner containers (home is mounted by the backend)."""
    return ",".join(f"{path}:{path}:ro" for path in read_only_dirs())


def image_environment() -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.prefix).resolve() / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }


def rootfs() -> bytes:
    """A tarball of empty folders, plus the host's top-level symlinks (bin -> usr/bin, ...)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in EMPTY_DIRS:
            entry = tarfile.TarInfo(name)
            entry.type, entry.mode, entry.mtime = tarfile.DIRTYPE, 0o1777 if name.endswith("tmp") else 0o755, 0
            tar.addfile(entry)
        for top in TOP_LEVEL:
            if Path(f"/{top}").is_symlink():
                entry = tarfile.TarInfo(top)
                entry.type, entry.linkname, entry.mtime = tarfile.SYMTYPE, os.readlink(f"/{top}"), 0
                tar.addfile(entry)
    return buffer.getvalue()


def ensure_runner_image(client: docker.DockerClient) -> str:
    """Import ``trainfaas-runner:test`` unless an image made for this checkout exists; return its name."""
    data = rootfs()
    environment = image_environment()
    key = hashlib.sha256(data + repr(sorted(environment.items())).encode()).hexdigest()[:16]
    try:
        if client.images.get(IMAGE).labels.get(KEY_LABEL) == key:
            return IMAGE
    except docker.errors.ImageNotFound:
        pass
    changes = [f"ENV {name}={value}" for name, value in environment.items()] + [f"LABEL {KEY_LABEL}={key}"]
    repository, _, tag = IMAGE.partition(":")
    client.api.import_image_from_data(data, repository=repository, tag=tag, changes=changes)
    return IMAGE


def remove_leftovers(client: docker.DockerClient, home: Path | None = None) -> None:
    """Remove trainfaas swarm services and containers of ``home``, or (None) of homes that no
    longer exist: what an interrupted test run left behind."""
    def stale(labels: dict[str, str]) -> bool:
        owner = labels.get("trainfaas.home")
        return owner is not None and (owner == str(home) if home is not None else not Path(owner).exists())

    if client.info().get("Swarm", {}).get("ControlAvailable"):
        for service in client.services.list(filters={"label": "trainfaas.home"}):
            if stale(service.attrs["Spec"].get("Labels", {})):
                service.remove()
    for container in client.containers.list(all=True, filters={"label": "trainfaas.home"}):
        if stale(container.labels):
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass  # a swarm task container that went with its service
