"""Resource amplification: what one write token can make the platform do is bounded. Per-project
quotas of queued and running executions, services a training creates start at zero, and
timeouts, attempts and the sleep adapter's fault options are bounded. Through the real API (and
the real fleet keeper) on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from tests.conftest import register_instance, wait_until
from trainfaas.adapters.datasets import write_digits
from trainfaas.scheduler.backends.memory import MemoryBackend
from trainfaas.scheduler.daemon import Scheduler
from trainfaas.services.cli.main import main
from trainfaas.services.core.statuses import LIVE_INSTANCE
from trainfaas.services.sdk.client import ApiError, Client
from trainfaas.services.store import queues
from trainfaas.services.store.records import Execution, Instance, Model, Service

SLEEP = "mgmt-train-sleep"


def error(response: Any) -> dict[str, Any]:
    return response.get_json()["error"]  # type: ignore[no-any-return]


def writer_of(api: Any, project: str, **limits: int | None) -> Any:
    """Create ``project`` with ``limits`` (set by the admin) and return a client with a write token of it."""
    assert api.client.post("/api/v1/projects", json={"name": project}).status_code == 201
    if limits:
        response = api.client.patch(f"/api/v1/projects/{project}", json=limits)
        assert response.status_code == 200, response.get_json()
    secret = api.client.post("/api/v1/tokens", json={"scope": "write", "project": project}).get_json()["token"]
    return api.as_(secret)


def enqueue_noop(client: Any) -> Any:
    return client.post(f"/api/v1/services/{SLEEP}/executions", json={"function": "noop", "input": {}})


def with_settings(api: Any, **changes: Any) -> None:
    """Run the app's next requests with ``changes`` to its settings."""
    api.config["SETTINGS"] = api.settings = api.settings.model_copy(update=changes)


def test_resource_amplification_quota_429(api: Any) -> None:
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    writer = writer_of(api, "team", max_queued=2)
    assert [enqueue_noop(writer).status_code for _ in range(2)] == [202, 202]

    refused = enqueue_noop(writer)

    assert refused.status_code == 429
    body = error(refused)
    assert body["code"] == "quota_exceeded" and "project" in body["fields"]
    assert "2 executions queued" in body["message"] and "limit is 2" in body["message"]
    assert "wait" in body["message"] and "ask an admin to raise it" in body["message"]
    assert Execution.select().where(Execution.project == "team").count() == 2  # nothing written
    assert api.redis.llen(queues.get_queue(api.redis, SLEEP).key) == 2
    # A training is refused the same way, and its model is left as it was.
    model = writer.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    assert writer.post(f"/api/v1/models/{model['id']}/train", json={}).status_code == 429
    assert Model.get_by_id(model["id"]).status == "created" and Execution.select().count() == 2

    # The limits and the usage show in the projects list and the project; only an admin changes them.
    shown = writer.get("/api/v1/projects").get_json()["items"][0]["limits"]
    assert shown == {"max_queued": 2, "max_running": api.settings.project_max_running, "queued": 2, "running": 0,
                     "max_queued_source": "project", "max_running_source": "default"}
    assert writer.patch("/api/v1/projects/team", json={"max_queued": 100}).status_code == 403
    assert api.client.patch("/api/v1/projects/nope", json={"max_queued": 1}).status_code == 404
    assert api.client.patch("/api/v1/projects/team", json={"max_queued": -1}).status_code == 422
    raised = api.client.patch("/api/v1/projects/team", json={"max_queued": 3}).get_json()["limits"]
    assert (raised["max_queued"], raised["queued"]) == (3, 2)
    assert enqueue_noop(writer).status_code == 202
    # null puts the default back; the default comes from the settings.
    reset = api.client.patch("/api/v1/projects/team", json={"max_queued": None}).get_json()["limits"]
    assert (reset["max_queued"], reset["max_queued_source"]) == (api.settings.project_max_queued, "default")
    with_settings(api, project_max_queued=3)
    assert enqueue_noop(writer).status_code == 429
    # A rerun queues the execution again: it counts too.
    done = Execution.select().where(Execution.project == "team").first()
    Execution.update(status="success").where(Execution.id == done.id).execute()
    with_settings(api, project_max_queued=2)
    assert writer.post(f"/api/v1/executions/{done.id}/rerun").status_code == 429
    assert Execution.get_by_id(done.id).status == "success"


def test_resource_amplification_concurrent_enqueues_never_overshoot_the_quota(api: Any) -> None:
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    writer_of(api, "busy", max_queued=5)
    secret = api.client.post("/api/v1/tokens", json={"scope": "write", "project": "busy"}).get_json()["token"]
    statuses: list[int] = []
    start = threading.Barrier(12)

    def enqueue() -> None:
        client = api.as_(secret)
        start.wait()
        statuses.append(enqueue_noop(client).status_code)

    threads = [threading.Thread(target=enqueue) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [202] * 5 + [429] * 7
    assert Execution.select().where(Execution.project == "busy").count() == 5


def register(api: Any) -> tuple[str, Any]:
    return register_instance(api, SLEEP)


def test_resource_amplification_running_quota_keeps_executions_pending(api: Any) -> None:
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    writer = writer_of(api, "team", max_running=1)
    first, second = (enqueue_noop(writer).get_json()["id"] for _ in range(2))
    other = enqueue_noop(api.client).get_json()["id"]  # the default project has its own quota
    instance_id, instance = register(api)

    def claim(execution_id: str) -> Any:
        return instance.post(f"/api/v1/instances/{instance_id}/claim", json={"execution_id": execution_id, "attempt": 1})

    assert claim(first).status_code == 200
    held = claim(second)
    assert held.status_code == 409 and error(held)["code"] == "project_running_limit"
    waiting = api.client.get(f"/api/v1/executions/{second}").get_json()
    assert waiting["status"] == "pending" and "max_running 1" in waiting["message"] and "team" in waiting["message"]
    assert claim(other).status_code == 200
    limits = api.client.get("/api/v1/projects/team").get_json()["limits"]
    assert (limits["queued"], limits["running"], limits["max_running"]) == (1, 1, 1)

    finished = instance.post(f"/api/v1/instances/{instance_id}/executions/{first}/finish",
                             json={"attempt": 1, "outcome": "success", "output": {}})
    assert finished.status_code == 200, finished.get_json()
    assert claim(second).status_code == 200
    assert api.client.get(f"/api/v1/executions/{second}").get_json()["message"] == ""


def live_instances(service: str) -> int:
    return Instance.select().where((Instance.service == service) & Instance.status.in_(LIVE_INSTANCE)).count()  # type: ignore[no-any-return]


def test_resource_amplification_services_start_at_zero(api: Any, short_tmp: Path) -> None:
    # The first training of an architecture creates its service: autoscaled from zero, at most one instance.
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep", "configuration": {"seconds": 1}}).get_json()
    assert api.client.post(f"/api/v1/models/{model['id']}/train", json={}).status_code == 202
    service = api.client.get(f"/api/v1/services/{SLEEP}").get_json()
    assert (service["scaling_type"], service["min_instances"], service["max_instances"]) == ("autoscale", 0, 1)

    # The fleet keeper starts its one instance at once (scale from zero), and none for work that
    # waits for its project's running quota.
    Service.update(backend="memory").where(Service.name == SLEEP).execute()
    scheduler = Scheduler(api.settings, MemoryBackend(), redis.Redis.from_url(api.settings.redis_url))
    decision = scheduler.keep_fleet(Service.get_by_id(SLEEP))
    assert decision is not None and decision.desired == 1 and live_instances(SLEEP) == 1
    held = writer_of(api, "held", max_running=0)
    assert enqueue_noop(held).status_code == 202
    assert scheduler.fleet.startable(Service.get_by_id(SLEEP)) == 1  # the training, not the held noop

    # The settings choose the size of the services trainings create.
    with_settings(api, new_service_max_instances=2)
    dataset = short_tmp / "data" / "digits"
    write_digits(dataset)
    resnet = api.client.post("/api/v1/models", json={"name": "r", "architecture": "resnet18"}).get_json()
    trained = api.client.post(f"/api/v1/models/{resnet['id']}/train", json={"dataset": str(dataset)})
    assert trained.status_code == 202, trained.get_json()
    created = Service.get_by_id("mgmt-train-resnet18")
    assert (created.scaling_type, created.min_instances, created.max_instances) == ("autoscale", 0, 2)


def test_resource_amplification_an_admins_service_keeps_its_settings(api: Any) -> None:
    configured = api.client.patch(f"/api/v1/services/{SLEEP}", json={"max_instances": 3}).get_json()
    assert (configured["scaling_type"], configured["min_instances"], configured["max_instances"]) == ("fixed", 1, 3)
    before = Service.get_by_id(SLEEP).__data__
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    assert api.client.post(f"/api/v1/models/{model['id']}/train", json={}).status_code == 202
    assert Service.get_by_id(SLEEP).__data__ == before


KNOBS = {"raise_error": "boom", "exit_code": 3, "allocate_mb": 64, "fail_at": 0.1, "diverge": True}


def test_resource_amplification_sleep_knobs_need_diagnostics(api: Any) -> None:
    with_settings(api, diagnostics=False)
    for knob, value in KNOBS.items():
        refused = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep", "configuration": {knob: value}})
        assert refused.status_code == 422, knob
        assert "TRAINFAAS_DIAGNOSTICS=1" in error(refused)["fields"][f"configuration.{knob}"]
    assert Model.select().count() == 0
    plain = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep", "configuration": {"seconds": 1}})
    assert plain.status_code == 201
    refused = api.client.post(f"/api/v1/models/{plain.get_json()['id']}/train", json={"configuration": {"allocate_mb": 1}})
    assert refused.status_code == 422 and "configuration.allocate_mb" in error(refused)["fields"]

    # With diagnostics on, the knobs work, and allocate_mb stays within its own bound.
    with_settings(api, diagnostics=True, diagnostics_max_allocate_mb=1024)
    drill = api.client.post("/api/v1/models", json={"name": "drill", "architecture": "sleep", "configuration": KNOBS})
    assert drill.status_code == 201
    huge = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep", "configuration": {"allocate_mb": 1024 * 1024}})
    assert huge.status_code == 422 and "from 0 to 1024" in error(huge)["fields"]["configuration.allocate_mb"]
    # A model saved while they were on cannot train once they are off.
    with_settings(api, diagnostics=False)
    refused = api.client.post(f"/api/v1/models/{drill.get_json()['id']}/train", json={})
    assert refused.status_code == 422 and "configuration.diverge" in error(refused)["fields"]
    assert Execution.select().count() == 0


def test_resource_amplification_timeouts_and_attempts_are_bounded(api: Any) -> None:
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    day = api.settings.max_timeout_s
    assert day == 86400
    for execution, field in (({"timeout_s": day + 1}, "execution.timeout_s"), ({"timeout_s": 30 * 86400}, "execution.timeout_s"),
                             ({"max_attempts": 11}, "execution.max_attempts"), ({"max_attempts": 0}, "execution.max_attempts")):
        refused = api.client.post(f"/api/v1/models/{model['id']}/train", json={"execution": execution})
        assert refused.status_code == 422 and field in error(refused)["fields"], (execution, refused.get_json())
        generic = api.client.post(f"/api/v1/services/{SLEEP}/executions", json={"function": "noop", "execution": execution})
        assert generic.status_code == 422 and field in error(generic)["fields"]
    too_long = api.client.post(f"/api/v1/models/{model['id']}/train", json={"execution": {"timeout_s": day + 1}})
    assert "at most 86400 seconds" in error(too_long)["fields"]["execution.timeout_s"]
    assert Execution.select().count() == 0
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"timeout_s": day + 1}).status_code == 422
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"max_attempts": 11}).status_code == 422

    accepted = api.client.post(f"/api/v1/models/{model['id']}/train", json={"execution": {"timeout_s": day, "max_attempts": 10}})
    assert accepted.status_code == 202 and (accepted.get_json()["timeout_s"], accepted.get_json()["max_attempts"]) == (day, 10)
    # A service's default longer than the server allows is cut to the bound.
    with_settings(api, max_timeout_s=60.0)
    assert enqueue_noop(api.client).get_json()["timeout_s"] == 60.0


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_resource_amplification_on_the_stack_a_service_scales_from_zero_and_the_cli_and_sdk_set_limits(stack: Any) -> None:
    client = stack.client
    model = client.create_model("cold", "sleep", configuration={"seconds": 0.2, "steps": 1})
    execution = client.train(model["id"])
    service = client.get_service(SLEEP)
    assert (service["scaling_type"], service["min_instances"], service["max_instances"]) == ("autoscale", 0, 1)
    wait_until(lambda: client.get_execution(execution["id"])["status"] == "success", what="the training from zero instances")

    env = {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url, "TRAINFAAS_TOKEN": ""}

    def cli(*args: str) -> Any:
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    cli("projects", "create", "team")
    assert json.loads(cli("projects", "limits", "team", "--max-queued", "1", "--max-running", "2", "--json").output) == {
        "max_queued": 1, "max_running": 2, "max_queued_source": "project", "max_running_source": "project", "queued": 0, "running": 0}
    secret = client.create_token("write", "team")["token"]
    team = Client(stack.settings.api_url, secret)
    client.pause_service(SLEEP)  # what is queued stays queued
    team.enqueue(SLEEP, "noop", {})
    with pytest.raises(ApiError) as refused:
        team.enqueue(SLEEP, "noop", {})
    assert refused.value.status == 429 and refused.value.code == "quota_exceeded" and "ask an admin" in refused.value.message
    assert team.project_limits("team")["queued"] == 1
    assert "1/1" in cli("projects", "list").output
    shown = cli("projects", "show", "team").output
    assert "1 of at most 1 (project)" in shown and "0 of at most 2 (project)" in shown
    assert client.update_project("team", max_queued=None)["limits"]["max_queued_source"] == "default"
    assert "(default)" in cli("projects", "limits", "team", "--default", "both").output
    team.enqueue(SLEEP, "noop", {})
