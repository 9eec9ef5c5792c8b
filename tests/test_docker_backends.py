"""The docker and swarm instance backends on the real stack and a real Docker engine.

Runner containers come from the runner image of ``make image`` when it was built from this
checkout, else from the stand-in ``trainfaas-runner:test``, which mounts the project and its Python
read-only (tests/docker_support.py); either way they run the code under test, and the run's output
names the image. Without a Docker engine these
cases are skipped with a message; with CI=true a missing engine (or swarm) is a failure.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from tests import docker_support
from tests.conftest import IN_CI, wait_until
from trainfaas.services.core.settings import Settings
from trainfaas.services.store.records import Instance

pytestmark = pytest.mark.stack

SERVICE = "mgmt-train-sleep"
TINY = {"cpus": 1, "memory_mb": 300, "gpus": 0}


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing Docker engine is a failure)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def runner(docker_client: Any, request: pytest.FixtureRequest) -> docker_support.Runner:
    chosen = docker_support.runner(docker_client)
    docker_support.announce(request.config, chosen.note)
    return chosen


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    try:
        client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        _unavailable(f"no Docker engine answers ({exc}); start one: dockerd --iptables=false --bridge=none &")
    docker_support.remove_leftovers(client)
    yield client
    client.close()


@pytest.fixture
def swarm(docker_client: Any) -> Any:
    if not docker_client.info().get("Swarm", {}).get("ControlAvailable"):
        _unavailable("this Docker engine is no swarm manager; run: docker swarm init --advertise-addr 127.0.0.1")
    return docker_client


@pytest.fixture
def stack_settings(stack_settings: Settings, docker_client: Any, runner: docker_support.Runner,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The stack's settings with the docker and swarm backends, the runner image and a tiny
    instance type. The API validates instance types against its own settings, read from the
    environment, so the types go there too."""
    types = {**stack_settings.instance_types, "tiny": TINY}
    monkeypatch.setenv("TRAINFAAS_INSTANCE_TYPES", json.dumps(types))
    settings = stack_settings.model_copy(update={
        "backends": "docker,swarm", "docker_image": runner.image, "docker_mounts": runner.docker_mounts,
        "docker_user": runner.user, "instance_types": types,
    })
    yield settings
    docker_support.remove_leftovers(docker_client, settings.home)  # after the stack stopped


def train_sleep(stack: Any, execution: dict[str, Any] | None = None, **configuration: Any) -> dict[str, Any]:
    model = stack.client.create_model("drill", "sleep", configuration=configuration)
    return stack.client.train(model["id"], execution=execution)  # type: ignore[no-any-return]


def wait_ended(stack: Any, execution_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    ended = ("success", "failed", "aborted", "terminated")
    return wait_until(lambda: (e := stack.client.get_execution(execution_id))["status"] in ended and e,  # type: ignore[no-any-return]
                      timeout_s, f"execution {execution_id} to end")


def containers_of(client: Any, instance_id: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"trainfaas.instance={instance_id}"})  # type: ignore[no-any-return]


def test_an_execution_runs_in_a_docker_container_and_succeeds(stack: Any, docker_client: Any) -> None:
    stack.client.update_service(SERVICE, backend="docker")
    execution = train_sleep(stack, seconds=1, steps=2)

    final = wait_ended(stack, execution["id"])

    assert final["status"] == "success", final
    instance = Instance.get_by_id(final["attempts"][0]["instance"])
    assert instance.backend == "docker"
    (container,) = containers_of(docker_client, instance.id)
    assert container.status == "running" and container.labels["trainfaas.service"] == SERVICE
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"
    limits = stack.settings.instance_types[stack.client.get_service(SERVICE)["instance_type"]]
    assert container.attrs["HostConfig"]["Memory"] == int(limits.get("memory_mb", 0)) * 1024 * 1024  # 0: no limit
    mounts = {m["Source"]: m["RW"] for m in container.attrs["Mounts"]}
    # Only what an instance needs: its attempts' folder read-write, never the home with its secrets and database.
    assert mounts[str(stack.settings.executions_dir)] is True and str(stack.settings.home) not in mounts
    assert not {source for source in mounts if Path(source).name in ("admin-token", "instance-secret", "trainfaas.db")}
    assert all(not mounts[str(root)] for root in stack.settings.dataset_roots if str(root) in mounts)


def test_a_memory_limit_kills_a_greedy_execution_and_the_reason_says_oomkilled(stack: Any, docker_client: Any) -> None:
    stack.client.update_service(SERVICE, backend="docker", instance_type="tiny")
    execution = train_sleep(stack, {"on_reset": "fail"}, seconds=2, steps=4, allocate_mb=2 * TINY["memory_mb"])

    final = wait_ended(stack, execution["id"])

    # Where it ran first: a run outside the limit says so here, not as a puzzling success below.
    instance = Instance.get_by_id(final["attempts"][0]["instance"])
    assert (instance.backend, instance.instance_type) == ("docker", "tiny"), final
    for container in containers_of(docker_client, instance.id):  # still there: its instance lives on
        assert container.attrs["HostConfig"]["Memory"] == TINY["memory_mb"] * 1024 * 1024, final
    assert final["status"] in ("failed", "aborted"), final
    reasons = [final["error"] or "", *(attempt["reason"] or "" for attempt in final["attempts"])]
    assert any("OOMKilled" in reason for reason in reasons), final


def test_a_container_that_its_memory_limit_killed_is_observed_as_oomkilled(docker_client: Any, runner: docker_support.Runner) -> None:
    from trainfaas.scheduler.backends.docker import exit_observation

    greedy = docker_client.containers.run(
        runner.image, ["python", "-c", f"x = bytearray({2 * TINY['memory_mb']} * 2**20); x[::4096] = b'1' * len(x[::4096])"],
        detach=True, network_mode="host", mem_limit=f"{TINY['memory_mb']}m", memswap_limit=f"{TINY['memory_mb']}m",
        volumes=list(runner.mounts), labels={"trainfaas.home": "/nonexistent/oom-test"})
    try:
        greedy.wait(timeout=60)
        greedy.reload()
        observation = exit_observation(greedy.attrs["State"])
    finally:
        greedy.remove(force=True)

    assert not observation.alive and observation.failed
    assert observation.exit_reason is not None and observation.exit_reason.startswith("OOMKilled"), observation


def test_a_new_scheduler_adopts_running_containers_by_label_and_drains_them_with_sigterm(stack: Any, docker_client: Any) -> None:
    from trainfaas.scheduler.backends import Observation
    from trainfaas.scheduler.backends.docker import DockerBackend

    stack.client.update_service(SERVICE, backend="docker")
    instance = wait_until(lambda: Instance.get_or_none((Instance.service == SERVICE) & (Instance.status == "running")), 60,
                          "a running docker instance")
    fresh = DockerBackend(stack.settings)  # knows nothing of the containers the stack's scheduler started

    assert fresh.observe(instance) == Observation(True)
    (container,) = containers_of(docker_client, instance.id)
    assert fresh.containers == {instance.id: container.id}

    fresh.stop(instance)
    wait_until(lambda: Instance.get_by_id(instance.id).status == "exited", 60, "the instance to drain and exit")
    assert Instance.get_by_id(instance.id).last_exit_reason == "drained"
    wait_until(lambda: not containers_of(docker_client, instance.id), 60, "the exited container to be collected")
    assert (stack.settings.home / "logs" / f"instance-{instance.id}.log").exists()


def test_swarm_replicas_follow_the_desired_count_drained_instances_stay_gone_and_killed_ones_are_replaced(
        stack: Any, swarm: Any) -> None:
    from trainfaas.scheduler.backends.swarm import SwarmBackend

    name = SwarmBackend.swarm_name(SERVICE)

    def tasks(state: str) -> list[dict[str, Any]]:
        found = swarm.services.list(filters={"name": name})
        return [task for task in found[0].tasks() if task["Status"]["State"] == state] if found else []

    def running_tasks() -> int:
        return len(tasks("running"))

    def replicas() -> int:
        return int(swarm.services.get(name).attrs["Spec"]["Mode"]["Replicated"]["Replicas"])

    def instances(*statuses: str) -> list[Instance]:
        return list(Instance.select().where((Instance.service == SERVICE) & Instance.status.in_(statuses)))

    stack.client.update_service(SERVICE, backend="swarm", scaling_type="fixed", min_instances=2, max_instances=2,
                                polling_interval_s=1, drain_time_s=5)
    wait_until(lambda: running_tasks() == 2, 120, "2 running swarm tasks")
    wait_until(lambda: len(instances("running")) == 2, 120, "2 registered instances")
    assert {i.backend for i in instances("running")} == {"swarm"}

    stack.client.update_service(SERVICE, min_instances=1, max_instances=1)
    wait_until(lambda: len(instances("exited")) == 1 and len(instances("initializing", "running", "terminating")) == 1,
               120, "one instance drained and exited, one left")
    wait_until(lambda: replicas() == 1 and running_tasks() == 1, 60, "the swarm service at 1 replica with 1 running task")
    (drained,) = instances("exited")
    (survivor,) = instances("running")
    assert drained.last_exit_reason == "drained"

    execution = train_sleep(stack, seconds=1, steps=2)
    final = wait_ended(stack, execution["id"])

    assert final["status"] == "success", final
    assert final["attempts"][0]["instance"] == survivor.id
    assert running_tasks() == 1 and len(instances("exited")) == 1

    killed_task = survivor.host.removeprefix("trainfaas-")  # a task's hostname names it
    SwarmBackend(stack.settings).kill(survivor)
    wait_until(lambda: not [t for t in tasks("running") if t["ID"] == killed_task], 60, "the killed task to end")
    (killed,) = [t for t in swarm.services.get(name).tasks() if t["ID"] == killed_task]
    assert swarm.containers.get(killed["Status"]["ContainerStatus"]["ContainerID"]).attrs["State"]["ExitCode"] == 137
    wait_until(lambda: [t for t in tasks("running") if t["ID"] != killed_task], 60, "swarm to replace the killed task")


def test_swarm_reports_replicas_that_crash_before_they_register_so_the_service_backs_off(
        swarm: Any, database_url: str, short_tmp: Any) -> None:
    from trainfaas.scheduler.backends.swarm import SwarmBackend
    from trainfaas.scheduler.policy import History, Observed, ServiceConfig, decide
    from trainfaas.services.core.settings import load_settings
    from trainfaas.services.store.records import Service

    # The stand-in without its mounts has no Python, so every task fails to start.
    settings = load_settings(home=short_tmp, database_url=database_url, redis_url="redis://127.0.0.1:1",
                             docker_image=docker_support.ensure_standin_image(swarm), docker_mounts="")
    service = Service.create(name="mgmt-train-sleep", architecture="sleep", backend="swarm")
    backend = SwarmBackend(settings)
    try:
        backend.set_replicas(service, 1)
        failures = wait_until(lambda: len(backend.failures(service, 0.0)) >= 3 and backend.failures(service, 0.0), 90,
                              "three failed swarm tasks")
        assert all(reason for _, reason in failures)
        observed = Observed(1, 0, (), failures=tuple(at for at, _ in failures), last_failure_reason=failures[-1][1])
        decision = decide(observed, ServiceConfig("fixed", 1, 1), failures[-1][0] + 1, History(1))
        assert decision.health == "error" and decision.may_start is False
    finally:
        backend.close(5.0)
        docker_support.remove_leftovers(swarm, settings.home)
