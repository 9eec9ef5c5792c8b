"""Batch enqueue (POST /services/{name}/executions/batch): all or nothing, each item checked as one
enqueue is, recorded in one transaction and queued in one Redis round trip; what Redis loses, the
reconciler puts back. Real Redis, SQLite and PostgreSQL (the ``api`` fixture)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from tests.conftest import register_instance, wait_until
from trainfaas.scheduler.reconciler import MISSING_GRACE_S, Reconciler
from trainfaas.services.cli.main import main
from trainfaas.services.sdk.client import ApiError
from trainfaas.services.store import queues
from trainfaas.services.store.records import Execution, StatusLog

SLEEP = "mgmt-train-sleep"
BATCH = f"/api/v1/services/{SLEEP}/executions/batch"


def noop(n: int) -> dict[str, Any]:
    return {"function": "noop", "input": {"n": n}}


def queued(api: Any) -> list[str]:
    return [job.decode() for job in api.redis.lrange(queues.get_queue(api.redis, SLEEP).key, 0, -1)]


def error(response: Any) -> dict[str, Any]:
    return response.get_json()["error"]  # type: ignore[no-any-return]


def nothing_recorded(api: Any) -> bool:
    return Execution.select().count() == 0 and StatusLog.select().count() == 0 and queued(api) == []


def writer_of(api: Any, project: str, **limits: int) -> Any:
    assert api.client.post("/api/v1/projects", json={"name": project}).status_code == 201
    if limits:
        assert api.client.patch(f"/api/v1/projects/{project}", json=limits).status_code == 200
    return api.as_(api.client.post("/api/v1/tokens", json={"scope": "write", "project": project}).get_json()["token"])


def sleep_service(api: Any) -> None:
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200


def test_a_batch_of_valid_executions_is_recorded_queued_in_order_and_runs(api: Any) -> None:
    sleep_service(api)
    answer = api.client.post(BATCH, json={"executions": [noop(n) for n in range(5)]})
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["count"] == 5 and body["service"] == SLEEP and len(set(body["ids"])) == 5
    assert queued(api) == [f"{execution_id}-1" for execution_id in body["ids"]]
    for n, execution_id in enumerate(body["ids"]):
        shown = api.client.get(f"/api/v1/executions/{execution_id}").get_json()
        assert (shown["status"], shown["input"], shown["function"]) == ("pending", {"n": n}, "noop")
        assert [entry["status"] for entry in shown["status_log"]] == ["created", "pending"]
    instance_id, instance = register_instance(api, SLEEP)
    for execution_id in body["ids"]:
        claimed = instance.post(f"/api/v1/instances/{instance_id}/claim", json={"execution_id": execution_id, "attempt": 1})
        assert claimed.status_code == 200, claimed.get_json()
        finished = instance.post(f"/api/v1/instances/{instance_id}/executions/{execution_id}/finish",
                                 json={"attempt": 1, "outcome": "success", "output": {}})
        assert finished.status_code == 200, finished.get_json()
    assert {row.status for row in Execution.select()} == {"success"}


def test_one_invalid_item_among_many_is_a_422_naming_its_index_and_field_and_nothing_is_recorded(api: Any) -> None:
    sleep_service(api)
    cases = [
        (7, {"function": "rm -rf", "input": {}}, "executions.7.function"),
        (3, {"function": "noop", "input": {}, "execution": {"max_attempts": 0}}, "executions.3.execution.max_attempts"),
        (5, {"function": "noop", "input": {}, "execution": {"timeout_s": 29 * 86400}}, "executions.5.execution.timeout_s"),
        (9, {"function": "noop", "input": {}, "surprise": 1}, "executions.9.surprise"),
        (2, {"function": "train_model", "input": {"model_id": "0" * 32}}, "executions.2.model_id"),
    ]
    for index, bad, field in cases:
        items = [noop(n) for n in range(12)]
        items[index] = bad
        refused = api.client.post(BATCH, json={"executions": items})
        assert refused.status_code in (404, 422), refused.get_json()
        assert any(name.startswith(field) for name in error(refused)["fields"]), (field, error(refused))
        assert nothing_recorded(api)


def test_a_training_item_is_checked_as_a_training_and_a_model_trains_once(api: Any) -> None:
    sleep_service(api)
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    train = {"function": "train_model", "input": {"model_id": model["id"], "configuration": {"epochs": -1}}}
    refused = api.client.post(BATCH, json={"executions": [noop(0), train]})
    assert refused.status_code == 422 and any(name.startswith("executions.1.input.configuration") for name in error(refused)["fields"])
    resnet = api.client.post("/api/v1/models", json={"name": "r", "architecture": "resnet18"}).get_json()
    assert api.client.patch("/api/v1/services/mgmt-train-resnet18", json={"min_instances": 0}).status_code == 200
    nowhere = {"function": "train_model", "input": {"model_id": resnet["id"], "dataset": "no-such-dataset"}}
    missing = api.client.post("/api/v1/services/mgmt-train-resnet18/executions/batch", json={"executions": [nowhere]})
    assert missing.status_code in (404, 422) and "executions.0.input.dataset" in error(missing)["fields"], missing.get_json()
    twice = {"function": "train_model", "input": {"model_id": model["id"]}}
    busy = api.client.post(BATCH, json={"executions": [noop(0), twice, twice]})
    assert busy.status_code == 409 and "executions.2.execution_id" in error(busy)["fields"], busy.get_json()
    assert nothing_recorded(api) and api.client.get(f"/api/v1/models/{model['id']}").get_json()["status"] == "created"
    done = api.client.post(BATCH, json={"executions": [noop(0), twice]})
    assert done.status_code == 202 and api.client.get(f"/api/v1/models/{model['id']}").get_json()["status"] == "pending"


def test_an_empty_batch_or_one_over_1000_is_a_422_and_nothing_is_recorded(api: Any) -> None:
    sleep_service(api)
    for items in ([], [noop(n) for n in range(1001)]):
        refused = api.client.post(BATCH, json={"executions": items})
        assert refused.status_code == 422 and "executions" in error(refused)["fields"], refused.get_json()
        assert nothing_recorded(api)
    api.config["SETTINGS"] = api.settings.model_copy(update={"project_max_queued": 1000})  # the default is lower
    assert api.client.post(BATCH, json={"executions": [noop(n) for n in range(1000)]}).status_code == 202
    assert Execution.select().count() == 1000 and len(queued(api)) == 1000


def test_an_unknown_service_or_a_project_the_token_cannot_reach_is_a_404(api: Any) -> None:
    sleep_service(api)
    writer = writer_of(api, "team")
    writer_of(api, "other")
    assert writer.post("/api/v1/services/mgmt-train-nope/executions/batch", json={"executions": [noop(0)]}).status_code == 404
    elsewhere = writer.post(BATCH, json={"executions": [noop(0), {**noop(1), "project": "other"}]})
    assert elsewhere.status_code == 404 and "executions.1.project" in error(elsewhere)["fields"]
    theirs = api.as_(api.client.post("/api/v1/tokens", json={"scope": "write", "project": "other"}).get_json()["token"])
    model = theirs.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    foreign = writer.post(BATCH, json={"executions": [noop(0), {"function": "train_model", "input": {"model_id": model["id"]}}]})
    assert foreign.status_code == 404 and "executions.1.model_id" in error(foreign)["fields"], foreign.get_json()
    assert nothing_recorded(api)


def test_the_queued_quota_applies_to_the_batch_as_a_whole(api: Any) -> None:
    sleep_service(api)
    writer = writer_of(api, "team", max_queued=5)
    assert writer.post(BATCH, json={"executions": [noop(n) for n in range(3)]}).status_code == 202
    refused = writer.post(BATCH, json={"executions": [noop(n) for n in range(3)]})
    assert refused.status_code == 429 and error(refused)["code"] == "quota_exceeded" and "3 more" in error(refused)["message"]
    assert Execution.select().count() == 3 and len(queued(api)) == 3
    assert writer.post(BATCH, json={"executions": [noop(n) for n in range(2)]}).status_code == 202
    assert writer.post(f"/api/v1/services/{SLEEP}/executions", json=noop(0)).status_code == 429


def test_a_batch_whose_queue_write_was_lost_is_put_back_by_the_reconciler(api: Any) -> None:
    sleep_service(api)
    app_redis = api.extensions["redis"]
    api.extensions["redis"] = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)  # nothing listens there
    try:
        answer = api.client.post(BATCH, json={"executions": [noop(n) for n in range(4)]})
    finally:
        api.extensions["redis"] = app_redis
    assert answer.status_code == 202, answer.get_json()
    ids = answer.get_json()["ids"]
    assert queued(api) == [] and {row.status for row in Execution.select()} == {"pending"}
    reconciler, now = Reconciler(api.redis), time.time()
    reconciler.reconcile(now)  # the first pass only notes them missing (an instance may have popped them)
    assert reconciler.reconcile(now + MISSING_GRACE_S) == 4
    assert sorted(queued(api)) == sorted(f"{execution_id}-1" for execution_id in ids)


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_the_cli_submits_a_jsonl_batch_and_the_sdk_a_list_and_both_run_on_the_stack(stack: Any, short_tmp: Path) -> None:
    stack.client.update_service(SLEEP, min_instances=1, max_instances=1)
    batch = short_tmp / "batch.jsonl"
    batch.write_text("".join(json.dumps(noop(n)) + "\n" for n in range(3)))
    env = {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url, "TRAINFAAS_TOKEN": ""}
    printed = CliRunner().invoke(main, ["executions", "submit", SLEEP, "--batch", str(batch), "--json"], env=env, catch_exceptions=False)
    assert printed.exit_code == 0, printed.output
    ids = json.loads(printed.output)["ids"] + stack.client.enqueue_batch(SLEEP, [noop(3), noop(4)])["ids"]
    batch.write_text(json.dumps(noop(0)) + "\n" + json.dumps({"function": "noop", "input": []}) + "\n")
    refused = CliRunner().invoke(main, ["executions", "submit", SLEEP, "--batch", str(batch)], env=env)
    assert refused.exit_code != 0 and "executions.1.input" in refused.output, refused.output
    with pytest.raises(ApiError) as too_many:
        stack.client.enqueue_batch(SLEEP, [noop(n) for n in range(1001)])
    assert too_many.value.status == 422

    def all_succeeded() -> bool:
        return {stack.client.get_execution(execution_id)["status"] for execution_id in ids} == {"success"}

    wait_until(all_succeeded, 120.0, "the batch's executions to succeed")
