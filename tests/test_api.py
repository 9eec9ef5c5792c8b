"""The HTTP API's edge: validation names the field, rejected requests leave no trace."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from trainfaas.services.store.records import Execution, Model, Service


@pytest.fixture
def client(api: Any) -> FlaskClient:
    client = api.client
    client.redis = api.redis
    return client  # type: ignore[no-any-return]


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


def test_unbounded_optimizer_args_are_refused_promptly_naming_the_argument(client: FlaskClient) -> None:
    lbfgs = {"optimizer": "LBFGS", "optimizer_args": {"max_iter": 1e308, "tolerance_grad": -1, "tolerance_change": -1}}
    response = client.post("/api/v1/models", json={"name": "m", "architecture": "resnet18", "configuration": lbfgs})
    assert response.status_code == 422
    assert "from 1 to 200" in error(response)["fields"]["configuration.optimizer_args.max_iter"]
    body = '{"name": "m", "architecture": "resnet18", "configuration": {"optimizer": "adam", "optimizer_args": {"eps": NaN}}}'
    response = client.post("/api/v1/models", data=body, content_type="application/json")
    assert response.status_code == 422 and "configuration.optimizer_args.eps" in error(response)["fields"]
    assert Model.select().count() == 0


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
    assert len(client.get(f"/api/v1/executions?q={execution['id']}").get_json()["items"]) == 1


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


def error_contract(response: Any, status: int) -> dict[str, Any]:
    """Assert the status and the shape of every 4xx body; return the error."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def test_each_error_class_has_its_status_and_the_error_body(client: FlaskClient, api: Any) -> None:
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    big = {"name": "m", "architecture": "sleep", "labels": ["x" * 1000] * 2000}
    assert error_contract(client.post("/api/v1/models", json=big), 413)["code"] == "request_entity_too_large"
    error_contract(client.post("/api/v1/models", data="name=m", content_type="text/plain"), 415)
    error_contract(client.post(f"/api/v1/models/{model['id']}/train"), 415)  # no content type at all
    assert "owner" in error_contract(client.post("/api/v1/models", json={"name": "m", "architecture": "sleep", "owner": 1}), 422)["fields"]
    assert "limit" in error_contract(client.get("/api/v1/models?limit=501"), 422)["fields"]
    error_contract(client.get("/api/v1/models/nope"), 404)
    error_contract(client.get("/api/v1/services/nope"), 404)
    error_contract(client.get("/api/v1/executions/nope/logs"), 404)
    error_contract(api.as_(None).get("/api/v1/models"), 401)
    assert Model.select().count() == 1 and nothing_stored(client)
    assert not api.settings.executions_dir.exists()  # and no file


def test_illegal_state_changes_answer_409_with_the_current_status(client: FlaskClient, api: Any) -> None:
    client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0})
    pending = client.post("/api/v1/services/mgmt-train-sleep/executions", json={"function": "noop", "input": {}}).get_json()
    fresh = error_contract(client.post(f"/api/v1/executions/{pending['id']}/rerun"), 409)
    assert fresh["fields"] == {"status": "pending"} and "pending" in fresh["message"]
    assert client.post(f"/api/v1/executions/{pending['id']}/terminate").get_json()["status"] == "terminated"
    ended = error_contract(client.post(f"/api/v1/executions/{pending['id']}/terminate"), 409)
    assert ended["fields"] == {"status": "terminated"} and "terminated" in ended["message"]
    assert Execution.get_by_id(pending["id"]).attempt == 1
    assert error_contract(client.post("/api/v1/projects", json={"name": "default"}), 409)["fields"] == {"name": "a name no other project has"}


def test_a_model_trains_once_at_a_time_and_a_refused_training_leaves_no_execution(client: FlaskClient) -> None:
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    train, queue = f"/api/v1/models/{model['id']}/train", "rq:queue:mgmt-train-sleep"
    first = client.post(train, json={}).get_json()
    assert first["status"] == "pending"
    for request in (lambda: client.post(train, json={}), lambda: client.post(
            "/api/v1/services/mgmt-train-sleep/executions", json={"function": "train_model", "input": {"model_id": model["id"]}})):
        busy = error_contract(request(), 409)
        assert busy["fields"]["execution_id"] == first["id"] and first["id"] in busy["message"]
        assert [e.id for e in Execution.select()] == [first["id"]]
        assert client.redis.lrange(queue, 0, -1) == [f"{first['id']}-1".encode()]  # type: ignore[attr-defined]
    assert client.post(f"/api/v1/executions/{first['id']}/terminate").get_json()["status"] == "terminated"
    assert client.get(f"/api/v1/models/{model['id']}").get_json()["status"] == "created"
    second = client.post(train, json={}).get_json()
    assert second["status"] == "pending"
    busy = error_contract(client.post(f"/api/v1/executions/{first['id']}/rerun"), 409)
    assert busy["fields"]["execution_id"] == second["id"] and second["id"] in busy["message"]
    assert (Execution.get_by_id(first["id"]).status, Execution.get_by_id(first["id"]).attempt) == ("terminated", 1)
    assert Execution.select().count() == 2 and Model.get_by_id(model["id"]).status == "pending"
    client.post(f"/api/v1/executions/{second['id']}/terminate")
    assert client.post(f"/api/v1/executions/{first['id']}/rerun").get_json()["status"] == "rerun"
    assert Model.get_by_id(model["id"]).status == "pending"


def test_of_racing_training_requests_for_one_model_exactly_one_is_queued(client: FlaskClient, api: Any) -> None:
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    client.post(f"/api/v1/models/{model['id']}/train", json={})  # creates the service, then frees the model again
    client.post(f"/api/v1/executions/{Execution.get().id}/terminate")
    start, answers = threading.Barrier(4), []

    def train() -> None:
        own = api.as_(api.admin_token)
        start.wait()
        answers.append(own.post(f"/api/v1/models/{model['id']}/train", json={}).status_code)

    threads = [threading.Thread(target=train) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [202, 409, 409, 409]
    assert Execution.select().where(Execution.status == "pending").count() == 1 and Execution.select().count() == 2


def test_data_sets_must_lie_inside_the_data_roots(client: FlaskClient, api: Any, short_tmp: Path) -> None:
    from trainfaas.adapters.datasets import write_digits

    root = short_tmp / "data"
    write_digits(root / "digits")
    outside = short_tmp / "elsewhere"
    write_digits(outside)
    (root / "escape").symlink_to(outside)
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "resnet18"}).get_json()
    for dataset in (str(outside), "../elsewhere", "digits/../../elsewhere", str(root / "escape"), "escape", "/etc"):
        response = client.post(f"/api/v1/models/{model['id']}/train", json={"dataset": dataset, "configuration": {"epochs": 1}})
        fields = error_contract(response, 422)["fields"]
        assert "outside" in response.get_json()["error"]["message"] and str(root) in fields["dataset"], dataset
    assert nothing_stored(client)
    for dataset in (str(root / "digits"), "digits"):
        response = client.post(f"/api/v1/models/{model['id']}/train", json={"dataset": dataset})
        assert response.status_code == 202, response.get_json()
        assert response.get_json()["input"]["dataset"] == str((root / "digits").resolve())
        client.post(f"/api/v1/executions/{response.get_json()['id']}/terminate")  # the model trains once at a time


def test_lists_page_with_cursors_in_a_stable_order_and_filter(client: FlaskClient) -> None:
    ids = [client.post("/api/v1/models", json={"name": f"m{i}", "architecture": "sleep"}).get_json()["id"] for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        page = client.get("/api/v1/models", query_string={"limit": 3, **({"cursor": cursor} if cursor else {})}).get_json()
        seen += [m["id"] for m in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        client.post("/api/v1/models", json={"name": "late", "architecture": "sleep"})  # newer rows do not shift pages
    assert pages == 3 and seen == list(reversed(ids))
    assert [m["name"] for m in client.get("/api/v1/models?q=m3").get_json()["items"]] == ["m3"]
    assert len(client.get("/api/v1/models?name=late").get_json()["items"]) == 2
    assert client.get(f"/api/v1/models?q={ids[0]}").get_json()["items"][0]["id"] == ids[0]
    for cursor in ("garbage", "WzFd", "WyJ4IiwgIngiXQ"):
        assert "cursor" in error_contract(client.get(f"/api/v1/models?cursor={cursor}"), 422)["fields"]
    assert "status" in error_contract(client.get("/api/v1/executions?status=pending,weird"), 422)["fields"]


def test_executions_filter_by_status_service_model_and_creation_time(client: FlaskClient) -> None:
    client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0})
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    trained = client.post(f"/api/v1/models/{model['id']}/train", json={}).get_json()
    noop = client.post("/api/v1/services/mgmt-train-sleep/executions", json={"function": "noop", "input": {}}).get_json()
    client.post(f"/api/v1/executions/{noop['id']}/terminate")

    def ids(**query: Any) -> list[str]:
        return [e["id"] for e in client.get("/api/v1/executions", query_string=query).get_json()["items"]]

    assert ids() == [noop["id"], trained["id"]]
    assert ids(model=model["id"]) == [trained["id"]]
    assert ids(status="terminated") == [noop["id"]] and ids(status="pending,terminated") == [noop["id"], trained["id"]]
    assert ids(service="mgmt-train-other") == []
    first, second = (Execution.get_by_id(e["id"]).created_at for e in (trained, noop))
    assert first < second
    assert ids(created_after=first) == [noop["id"]] and ids(created_before=second) == [trained["id"]]


def test_the_served_spec_describes_every_registered_endpoint_with_its_models(client: FlaskClient) -> None:
    from trainfaas.services.api.openapi import build_spec
    from trainfaas.services.api.registry import ENDPOINTS

    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec == build_spec() and spec["openapi"].startswith("3.1")
    operations = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    assert operations == {(e.path, e.method) for e in ENDPOINTS}
    train = spec["paths"]["/api/v1/models/{model_id}/train"]["post"]
    assert train["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TrainRequest"}
    assert set(train["responses"]) == {"202", "401", "403", "404", "409", "413", "414", "415", "422", "429"}  # 409: an ambiguous id prefix; 429: the quota
    assert spec["components"]["schemas"]["ExecutionSettings"]["properties"]["max_attempts"]["anyOf"][0]["minimum"] == 1
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def nothing_queued(client: FlaskClient) -> bool:
    return Execution.select().count() == 0 and not client.redis.keys("rq:queue:*")  # type: ignore[attr-defined]


def test_a_data_set_path_with_a_nul_character_is_a_422_naming_the_data_set(client: FlaskClient) -> None:
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "resnet18"}).get_json()
    for dataset in ("\u0000", "digits\u0000/../x"):
        response = client.post(f"/api/v1/models/{model['id']}/train", json={"dataset": dataset})
        assert "NUL" in error_contract(response, 422)["fields"]["dataset"]
    assert nothing_stored(client)


def test_a_nul_character_anywhere_in_a_request_is_a_422_naming_the_field(client: FlaskClient, api: Any) -> None:
    """PostgreSQL stores no NUL in text (the fuzz found a 500 on it): refused at the edge, on every database."""
    import base64
    import json

    from trainfaas.services.core.protocol import sendable

    model = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    cursor = base64.urlsafe_b64encode(json.dumps([1.0, "a\u0000"]).encode()).decode().rstrip("=")
    cases = ((client.post("/api/v1/models", json={"name": "a\u0000b", "architecture": "sleep"}), "name"),
             (client.post("/api/v1/models", json={"name": "m", "architecture": "sleep", "configuration": {"k\u0000": 1}}),
              "configuration.k\\0"),
             (client.post(f"/api/v1/models/{model['id']}/train", json={"configuration": {"seconds": ["\u0000"]}}),
              "configuration.seconds.0"),
             (client.get("/api/v1/executions?model=a%00b"), "model"),
             (client.get("/api/v1/models/abcd%00ef"), "model_id"),
             (client.get("/api/v1/projects/de%00fault"), "name"),
             (client.get(f"/api/v1/executions?cursor={cursor}"), "cursor"))
    for response, field in cases:
        assert field in error_contract(response, 422)["fields"], (field, response.get_json())
    client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0})
    instance = client.post("/api/v1/instances", json={"service": "mgmt-train-sleep"}).get_json()
    as_instance = api.as_(instance["token"])
    assert as_instance.post(f"/api/v1/instances/{instance['id']}%00/heartbeat", json={}).status_code == 401
    report = {"events": [{"execution_id": "x" * 32, "attempt": 1, "at": 1.0, "event": {"kind": "log", "line": "a\u0000b"}}]}
    assert "events.0.event.line" in error_contract(as_instance.post(f"/api/v1/instances/{instance['id']}/report", json=report),
                                                   422)["fields"]
    # What an instance sends has none: its log lines and tracebacks keep a U+FFFD in its place.
    assert sendable(report)["events"][0]["event"]["line"] == "a\ufffdb" and sendable({"k\u0000": ("\u0000",)}) == {"k\ufffd": ["\ufffd"]}
    assert as_instance.post(f"/api/v1/instances/{instance['id']}/report", json=sendable(report)).status_code == 200
    assert Model.select().count() == 1 and nothing_queued(client)


def test_the_generic_enqueue_checks_a_train_model_input_as_a_train_request(client: FlaskClient) -> None:
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "resnet18"}).get_json()
    client.patch("/api/v1/services/mgmt-train-resnet18", json={"min_instances": 0})
    cases = (({"configuration": "epochs=1"}, "input.configuration"), ({"configuration": [1]}, "input.configuration"),
             ({"dataset": 7}, "input.dataset"), ({"dataset": ["digits"]}, "input.dataset"),
             ({"dataset": "d" * 4097}, "input.dataset"), ({"dataset": "\u0000"}, "input.dataset"),
             ({"dataset": "../elsewhere"}, "input.dataset"), ({"configuration": {"epochs": 0}}, "input.configuration.epochs"),
             ({"model": 1}, "input.model"), ({"model_id": None}, "input.model_id"), ({"model_id": "m" * 33}, "input.model_id"))
    for given, field in cases:
        body = {"function": "train_model", "input": {"model_id": model["id"], **given}}
        response = client.post("/api/v1/services/mgmt-train-resnet18/executions", json=body)
        assert field in error_contract(response, 422)["fields"], (given, response.get_json())
    assert "input.model_id" in error_contract(client.post("/api/v1/services/mgmt-train-resnet18/executions", json={
        "function": "train_model", "input": {}}), 422)["fields"]
    assert nothing_queued(client)


def test_a_body_nested_deeper_than_the_limit_is_a_422_naming_the_body(client: FlaskClient) -> None:
    from trainfaas.services.api.registry import MAX_DEPTH

    deep = '{"name": "m", "architecture": "sleep", "configuration": ' + '[' * 5000 + ']' * 5000 + '}'
    response = client.post("/api/v1/models", data=deep, content_type="application/json")
    assert "body" in error_contract(response, 422)["fields"]
    nested: Any = "x"
    for _ in range(MAX_DEPTH):
        nested = {"a": nested}  # with the body itself, one level too deep
    response = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep", "configuration": nested})
    assert "body" in error_contract(response, 422)["fields"]
    assert Model.select().count() == 0


def test_integers_beyond_their_bounds_are_a_422_naming_the_field(client: FlaskClient, api: Any) -> None:
    client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0})
    response = client.post("/api/v1/instances", json={"service": "mgmt-train-sleep", "pid": 2**70})
    assert "pid" in error_contract(response, 422)["fields"]
    instance = client.post("/api/v1/instances", json={"service": "mgmt-train-sleep", "pid": 2**31 - 1}).get_json()
    as_instance = api.as_(instance["token"])
    for attempt in (2**64, 2**70, -(2**70)):
        response = as_instance.post(f"/api/v1/instances/{instance['id']}/claim", json={"execution_id": "x", "attempt": attempt})
        assert "attempt" in error_contract(response, 422)["fields"], attempt
    heartbeat = {"running": [{"execution_id": "x", "attempt": 1, "pid": 2**70}]}
    response = as_instance.post(f"/api/v1/instances/{instance['id']}/heartbeat", json=heartbeat)
    assert "running.0.pid" in error_contract(response, 422)["fields"]
    assert "limit" in error_contract(client.get(f"/api/v1/models?limit={2**70}"), 422)["fields"]
    assert "created_after" in error_contract(client.get("/api/v1/executions?created_after=inf"), 422)["fields"]


def test_a_uri_longer_than_the_api_reads_is_a_documented_414(client: FlaskClient) -> None:
    from trainfaas.services.api.openapi import build_spec
    from trainfaas.services.api.registry import MAX_URI_BYTES

    assert client.get("/api/v1/models", query_string={"q": "m" * 100}).status_code == 200
    for uri in (f"/api/v1/models?q={'m' * MAX_URI_BYTES}", f"/api/v1/models/{'é' * MAX_URI_BYTES}", "/x" * MAX_URI_BYTES):
        assert "uri" in error_contract(client.get(uri), 414)["fields"]
    operations = [operation for item in build_spec()["paths"].values() for operation in item.values()]
    assert operations and all("414" in operation["responses"] for operation in operations)
