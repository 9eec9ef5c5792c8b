"""deploy/compose.yaml and deploy/stack.yaml on the real Docker engine, with the real images.

Each test brings the file up (API, scheduler, Redis, PostgreSQL) from the runner image that
``make image`` built from this checkout and the local Redis and PostgreSQL images of ``make
service-images``, trains the digits sample through its API on the docker (compose) or swarm
(stack) backend, takes it down, and checks that no container, service, volume or network of it is
left. Without a Docker engine or without those images they are skipped with a message; with
CI=true that is a failure (.ci/run builds the images first).
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from tests import docker_support
from tests.conftest import IN_CI, free_port, wait_until
from trainfaas.adapters.datasets import write_digits
from trainfaas.deploy import build_image
from trainfaas.services.sdk.client import Client

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "mgmt-train-resnet18"
TINY_TRAINING = {"epochs": 1, "batch_size": 16, "input_size": 16, "warmup_steps": 0}
ENDED = ("success", "failed", "aborted", "terminated")


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message} (CI=true: .ci/run starts the engine and builds the images)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The Docker engine, once the runner, Redis and PostgreSQL images are there and current."""
    try:
        client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        _unavailable(f"no Docker engine answers ({exc}); start one: dockerd --iptables=false --bridge=none &")
    if build_image.up_to_date_runner_image() is None:
        _unavailable(f"{build_image.runner_image()} is missing or older than this checkout: run make image")
    for image in (build_image.REDIS_IMAGE, build_image.POSTGRES_IMAGE):
        if build_image.image_label(image) is None:
            _unavailable(f"{image} is missing: run make service-images")
    docker_support.announce(request.config, f"runner image: {build_image.runner_image()} (make image)")
    yield client
    client.close()


@pytest.fixture
def deployment(engine: Any) -> Iterator[dict[str, str]]:
    """A home (reachable by the image's uid 10001) and the variables the deploy files read."""
    home = Path(tempfile.mkdtemp(prefix="trainfaas-deploy-", dir="/tmp"))
    home.chmod(0o755)
    (home / "executions").mkdir()
    os.chown(home / "executions", 10001, 10001)
    variables = {
        "TRAINFAAS_HOME": str(home), "TRAINFAAS_IMAGE": build_image.runner_image(),
        "TRAINFAAS_REDIS_IMAGE": build_image.REDIS_IMAGE, "TRAINFAAS_POSTGRES_IMAGE": build_image.POSTGRES_IMAGE,
        "TRAINFAAS_PORT": str(free_port()), "TRAINFAAS_REDIS_PORT": str(free_port()),
        "TRAINFAAS_POSTGRES_PORT": str(free_port()), "TRAINFAAS_POSTGRES_PASSWORD": secrets.token_hex(8),
    }
    yield variables
    docker_support.remove_leftovers(engine, home)
    shutil.rmtree(home, ignore_errors=True)


def compose_command() -> list[str]:
    """The `docker compose` plugin where there is one, else Debian's docker-compose."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is None:
        _unavailable("neither `docker compose` nor docker-compose is installed: apt-get install docker-compose")
    return ["docker-compose"]


def run(command: list[str], variables: dict[str, str]) -> None:
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, **variables}, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"


def show_logs(*commands: list[str], variables: dict[str, str]) -> None:
    """Print what ``commands`` print (the deployment's logs): pytest shows it with a failure."""
    for command in commands:
        shown = subprocess.run(command, cwd=ROOT, env={**os.environ, **variables}, capture_output=True, text=True)
        print(f"--- {' '.join(command)}:\n{shown.stdout[-8000:]}{shown.stderr[-4000:]}")


def train_digits(variables: dict[str, str], backend: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Through the deployment's API: put the service on ``backend``, train the digits sample;
    return the ended execution and the instance that ran it."""
    api_url = f"http://127.0.0.1:{variables['TRAINFAAS_PORT']}"
    wait_until(lambda: _answers(f"{api_url}/readyz"), 300, "the API to be ready")
    home = Path(variables["TRAINFAAS_HOME"])
    client = Client(api_url, token=wait_until(lambda: _read(home / "admin-token"), 60, "the admin token"))
    dataset = write_digits(home / "datasets" / "digits")["path"]
    client.update_service(SERVICE, backend=backend)
    model = client.create_model("digits", "resnet18", configuration=TINY_TRAINING)
    execution = client.train(model["id"], dataset=str(dataset))
    final = wait_until(lambda: (e := client.get_execution(execution["id"]))["status"] in ENDED and e, 600,
                       f"execution {execution['id']} to end")
    (instance,) = [i for i in client.instances(SERVICE) if i["id"] == final["attempts"][0]["instance"]]
    return final, instance


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=3).status_code == 200
    except requests.RequestException:
        return False


def _read(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def container_names(engine: Any, label: str) -> list[str]:
    """Names of the containers with ``label``, from one listing: the SDK's containers.list() inspects
    each one afterwards, and a container that goes meanwhile (a swarm task being removed) fails it."""
    return [entry["Names"][0].lstrip("/") for entry in engine.api.containers(all=True, filters={"label": label})]


def left_behind(engine: Any, label: str, home: str) -> list[str]:
    """Containers, services, volumes and networks of the deployment (by ``label``) or of its
    home's instances that still exist."""
    found = [f"container {name}" for name in container_names(engine, label)]
    found += [f"instance container {name}" for name in container_names(engine, f"trainfaas.home={home}")]
    found += [f"volume {v.name}" for v in engine.volumes.list(filters={"label": label})]
    found += [f"network {n.name}" for n in engine.networks.list(filters={"label": label})]
    if engine.info().get("Swarm", {}).get("ControlAvailable"):
        found += [f"service {s.name}" for s in engine.services.list(filters={"label": label})]
        found += [f"instance service {s.name}" for s in engine.services.list(filters={"label": f"trainfaas.home={home}"})]
    return found


def test_compose_runs_a_training_on_the_docker_backend_and_leaves_nothing_behind(
        engine: Any, deployment: dict[str, str]) -> None:
    project = f"tfops{secrets.token_hex(3)}"
    compose = [*compose_command(), "-p", project, "-f", "deploy/compose.yaml"]
    label = f"com.docker.compose.project={project}"
    try:
        run([*compose, "up", "-d"], deployment)
        final, instance = train_digits(deployment, "docker")
    except BaseException:
        show_logs([*compose, "ps"], [*compose, "logs", "--tail", "60"], variables=deployment)
        raise
    finally:
        run([*compose, "down", "--volumes", "--remove-orphans", "--timeout", "90"], deployment)

    assert final["status"] == "success", final
    assert instance["backend"] == "docker", instance
    assert left_behind(engine, label, deployment["TRAINFAAS_HOME"]) == []


def test_a_swarm_stack_runs_a_training_on_the_swarm_backend_and_leaves_nothing_behind(
        engine: Any, deployment: dict[str, str]) -> None:
    if not engine.info().get("Swarm", {}).get("ControlAvailable"):
        _unavailable("this Docker engine is no swarm manager; run: docker swarm init --advertise-addr 127.0.0.1")
    stack = f"tfops{secrets.token_hex(3)}"
    label = f"com.docker.stack.namespace={stack}"
    try:
        run(["docker", "stack", "deploy", "--resolve-image", "never", *_detach(), "-c", "deploy/stack.yaml", stack], deployment)
        final, instance = train_digits(deployment, "swarm")
    except BaseException:
        show_logs(["docker", "stack", "ps", "--no-trunc", stack],
                  *(["docker", "service", "logs", "--tail", "60", f"{stack}_{name}"] for name in ("api", "scheduler")),
                  variables=deployment)
        raise
    finally:
        run(["docker", "stack", "rm", stack], deployment)
        # `docker stack rm` returns before the tasks are gone, and keeps the volumes.
        wait_until(lambda: not container_names(engine, label), 180, "the stack's containers to go")
        wait_until(lambda: not engine.services.list(filters={"label": f"trainfaas.home={deployment['TRAINFAAS_HOME']}"}),
                   180, "the scheduler's swarm services to go")
        for volume in engine.volumes.list(filters={"label": label}):
            volume.remove()

    assert final["status"] == "success", final
    assert instance["backend"] == "swarm", instance
    assert left_behind(engine, label, deployment["TRAINFAAS_HOME"]) == []


def _detach() -> list[str]:
    """`--detach`: newer docker CLIs wait for the services to converge unless told not to."""
    usage = subprocess.run(["docker", "stack", "deploy", "--help"], capture_output=True, text=True).stdout
    return ["--detach"] if "--detach" in usage else []
