"""A rerun on another instance type, on SQLite and PostgreSQL: it moves to the architecture's
service of that type (created on first use, scaling to zero, taken again by later reruns), an
unknown type is refused listing the known ones and changes nothing, another project's execution is
not found; and on the real stack the rerun runs on an instance of the sibling service."""
from __future__ import annotations

from typing import Any

import pytest

from tests.test_api_access import project_tokens
from tests.test_pipeline import wait_status
from tests.test_reruns import ended  # noqa: F401 - the fixture
from trainfaas.services.store import queues
from trainfaas.services.store.records import Attempt, Execution, Instance, Service, StatusLog


def test_a_rerun_on_another_type_moves_to_the_architectures_service_of_that_type(api: Any, ended: dict[str, Any]) -> None:  # noqa: F811
    response = api.client.post(f"/api/v1/executions/{ended['id']}/rerun", json={"instance_type": "regular-s"})
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["service"] == "mgmt-train-sleep--regular-s"
    sibling = Service.get_by_id("mgmt-train-sleep--regular-s")
    assert (sibling.architecture, sibling.instance_type, sibling.scaling_type, sibling.min_instances) == ("sleep", "regular-s", "autoscale", 0)
    assert sibling.backend == Service.get_by_id("mgmt-train-sleep").backend
    note = StatusLog.select().where(StatusLog.execution == ended["id"]).order_by(StatusLog.id.desc()).first().message
    assert "instance type default -> regular-s (service mgmt-train-sleep--regular-s)" in note
    assert queues.queue_depth(api.redis, "mgmt-train-sleep--regular-s") == 1  # the sibling's instances pull it
    assert api.client.post(f"/api/v1/executions/{ended['id']}/terminate").status_code == 202

    back = api.client.post(f"/api/v1/executions/{ended['id']}/rerun", json={"instance_type": "default"})
    assert back.status_code == 202 and back.get_json()["service"] == "mgmt-train-sleep", back.get_json()
    assert api.client.post(f"/api/v1/executions/{ended['id']}/terminate").status_code == 202
    again = api.client.post(f"/api/v1/executions/{ended['id']}/rerun", json={"instance_type": "regular-s"})
    assert again.get_json()["service"] == "mgmt-train-sleep--regular-s" and Service.select().count() == 2


@pytest.mark.parametrize("instance_type", ["huge", "", "x" * 51])
def test_an_unknown_instance_type_is_refused_listing_the_known_ones(api: Any, ended: dict[str, Any], instance_type: str) -> None:  # noqa: F811
    response = api.client.post(f"/api/v1/executions/{ended['id']}/rerun", json={"instance_type": instance_type})
    assert response.status_code == 422 and "instance_type" in response.get_json()["error"]["fields"], response.get_json()
    if instance_type == "huge":
        assert "regular-s" in response.get_json()["error"]["fields"]["instance_type"]
    row = Execution.get_by_id(ended["id"])
    assert (row.status, row.attempt, row.service_id) == ("terminated", 1, "mgmt-train-sleep") and Service.select().count() == 1


def test_a_rerun_that_is_refused_creates_no_service_and_another_projects_is_not_found(api: Any, ended: dict[str, Any]) -> None:  # noqa: F811
    assert api.client.post(f"/api/v1/executions/{ended['id']}/rerun", json={}).status_code == 202
    busy = api.client.post(f"/api/v1/executions/{ended['id']}/rerun", json={"instance_type": "gpu-1"})
    assert busy.status_code == 409 and Service.select().count() == 1, busy.get_json()
    writer = api.as_(project_tokens(api, "other")["write"])
    assert writer.post(f"/api/v1/executions/{ended['id']}/rerun", json={"instance_type": "gpu-1"}).status_code == 404
    assert Service.select().count() == 1


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_a_rerun_on_another_instance_type_runs_on_an_instance_of_that_type(stack: Any) -> None:
    model = stack.client.create_model("drill", "sleep", configuration={"seconds": 0.05, "steps": 2})
    execution = stack.client.train(model["id"])
    wait_status(stack, execution["id"], "success")
    rerun = stack.client.rerun(execution["id"], instance_type="regular-xs")
    assert rerun["service"] == "mgmt-train-sleep--regular-xs"
    wait_status(stack, execution["id"], "success")
    attempt = Attempt.get((Attempt.execution == execution["id"]) & (Attempt.number == 2))
    assert Instance.get_by_id(attempt.instance).service_id == "mgmt-train-sleep--regular-xs"
