"""The HTTP API's edge: validation names the field, rejected requests leave no trace."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from services.app import create_app
from services.config import load_settings
from services.models import Execution, Model, Service


@pytest.fixture
def client(database_url: str, redis_url: str, short_tmp: Path) -> Iterator[FlaskClient]:
    settings = load_settings(home=short_tmp, database_url=database_url, redis_url=redis_url)
    app = create_app(settings)
    with app.test_client() as test_client:
        test_client.redis = redis.Redis.from_url(redis_url)  # type: ignore[attr-defined]
        yield test_client


def error(response: Any) -> dict[str, Any]:
    return response.get_json()["error"]  # type: ignore[no-any-return]


def nothing_stored(client: FlaskClient) -> bool:
    return Execution.select().count() == 0 and Service.select().count() == 0 and not client.redis.keys("rq:queue:*")  # type: ignore[attr-defined]


def test_healthz_answers_ok(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_an_unknown_architecture_is_rejected_naming_the_field(client: FlaskClient) -> None:
    response = client.post("/api/v1/models", json={"name": "m", "architecture": "resnet9000"})
    assert response.status_code == 422
    assert "architecture" in error(response)["fields"] and Model.select().count() == 0


def test_an_unknown_or_out_of_range_option_is_rejected_naming_the_field(client: FlaskClient) -> None:
    response = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep", "configuration": {"secs": 1}})
    assert response.status_code == 422 and "configuration.secs" in error(response)["fields"]
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    response = client.post(f"/api/v1/models/{model['id']}/train", json={"configuration": {"seconds": -1}})
    assert response.status_code == 422 and "configuration.seconds" in error(response)["fields"]
    assert nothing_stored(client)


def test_bad_execution_settings_are_rejected_before_anything_is_queued(client: FlaskClient) -> None:
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    for settings, field in (({"on_reset": "maybe"}, "execution.on_reset"), ({"max_attempts": 0}, "execution.max_attempts"),
                            ({"timeout_s": 0}, "execution.timeout_s"), ({"colour": "red"}, "execution.colour")):
        response = client.post(f"/api/v1/models/{model['id']}/train", json={"execution": settings})
        assert response.status_code == 422 and field in error(response)["fields"], (settings, response.get_json())
    assert nothing_stored(client)


def test_a_missing_data_set_is_rejected_before_anything_is_queued(client: FlaskClient, short_tmp: Path) -> None:
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "resnet18"}).get_json()
    for dataset in (None, str(short_tmp / "nowhere"), "no-such-dataset"):
        body = {} if dataset is None else {"dataset": dataset}
        response = client.post(f"/api/v1/models/{model['id']}/train", json=body)
        assert response.status_code == 422 and "dataset" in error(response)["fields"], response.get_json()
    assert nothing_stored(client)


def test_wrong_content_type_unknown_ids_and_unknown_fields_get_their_own_codes(client: FlaskClient) -> None:
    assert client.post("/api/v1/models", data="name=m", content_type="text/plain").status_code == 415
    assert client.get("/api/v1/executions/nope").status_code == 404
    assert error(client.get("/api/v1/models/nope"))["code"] == "not_found"
    response = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep", "owner": "me"})
    assert response.status_code == 422 and "owner" in error(response)["fields"]
    assert client.get("/api/v1/executions?status=weird").status_code == 422


def test_a_training_request_records_the_execution_before_queueing_only_its_id(client: FlaskClient) -> None:
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    execution = client.post(f"/api/v1/models/{model['id']}/train", json={"execution": {"max_attempts": 5}}).get_json()
    assert execution["status"] == "pending" and execution["max_attempts"] == 5 and execution["timeout_s"] == 21600
    queued = client.redis.lrange("rq:queue:mgmt-train-sleep", 0, -1)  # type: ignore[attr-defined]
    assert queued == [f"{execution['id']}-1".encode()]
    listed = client.get("/api/v1/executions?status=pending&service=mgmt-train-sleep").get_json()
    assert [item["id"] for item in listed["items"]] == [execution["id"]]
    assert client.get(f"/api/v1/executions?q={execution['id']}").get_json()["total"] == 1


def test_a_service_can_be_configured_before_its_first_training(client: FlaskClient) -> None:
    response = client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0, "max_attempts": 4})
    assert response.status_code == 200 and response.get_json()["max_attempts"] == 4
    response = client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 3, "max_instances": 2})
    assert response.status_code == 422 and "min_instances" in error(response)["fields"]
    assert client.patch("/api/v1/services/mgmt-train-nope", json={"min_instances": 0}).status_code == 422


def test_the_generic_enqueue_runs_known_functions_only(client: FlaskClient) -> None:
    client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0})
    response = client.post("/api/v1/services/mgmt-train-sleep/executions", json={"function": "noop", "input": {"a": 1}})
    assert response.status_code == 202 and response.get_json()["function"] == "noop"
    response = client.post("/api/v1/services/mgmt-train-sleep/executions", json={"function": "rm -rf", "input": {}})
    assert response.status_code == 422 and "function" in error(response)["fields"]
