"""The runner image of the Docker tests: the real one when it is up to date, else a stand-in.

The real image is ``trainfaas-runner:<version>``, which ``make image`` builds (deploy/build_image.py)
and labels with the checkout it was built from; the tests run it when that label matches this
checkout, as root inside (``docker_user 0:0``, so it reaches the embedded Redis' socket; its work
processes still run as the work user). Otherwise they fall back to the stand-in:
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
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests import summary
from trainfaas.deploy import build_image

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


@dataclass(frozen=True)
class Runner:
    """The image runner containers run, with the binds and user it needs in tests."""

    image: str
    mounts: tuple[str, ...]  # host:container:ro binds
    user: str
    note: str  # which image, and why: for the tests' output

    @property
    def docker_mounts(self) -> str:
        return ",".join(self.mounts)


def runner(client: docker.DockerClient) -> Runner:
    """The real runner image when ``make image`` built it from this checkout, else the stand-in."""
    real = build_image.up_to_date_runner_image()
    if real is not None:
        return Runner(real, (), "0:0", f"runner image: {real} (make image, built from this checkout)")
    reason = "older than this checkout" if build_image.image_label(build_image.runner_image()) is not None else "not built"
    return Runner(ensure_standin_image(client), tuple(f"{path}:{path}:ro" for path in read_only_dirs()), "",
                  f"runner image: {IMAGE}, the stand-in that mounts the host's Python "
                  f"({build_image.runner_image()} is {reason}: make image)")


def announce(config: pytest.Config, note: str) -> None:
    """Say at the end of the test run's output, even a quiet one, which runner image the tests used."""
    summary.note(config, f"[{note}]")


def ensure_standin_image(client: docker.DockerClient) -> str:
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
