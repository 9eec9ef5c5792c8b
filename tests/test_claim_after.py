"""An instance that runs short executions one after another sends the last one's finish with the
next claim (``POST /instances/<id>/claim-after``): each part is answered as it would be alone, and
a finish that no claim takes along still goes on its own. Over the real app and database."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.conftest import register_instance, wait_until
from trainfaas.services.core.protocol import Finish, Finished
from trainfaas.services.store.records import Attempt, Execution
from trainfaas.services.worker.control_plane import ControlPlane
from trainfaas.services.worker.heartbeats import Finishes

SLEEP = "mgmt-train-sleep"


def enqueue(api: Any, count: int) -> list[str]:
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    return [api.client.post(f"/api/v1/services/{SLEEP}/executions", json={"function": "noop", "input": {}}).get_json()["id"]
            for _ in range(count)]


def success(attempt: int = 1, **fields: Any) -> dict[str, Any]:
    return {"attempt": attempt, "outcome": "success", "reason": "", "output": {"done": True}, **fields}


def test_the_finishes_are_recorded_before_the_claim_and_each_part_is_answered(api: Any) -> None:
    first, second, third = enqueue(api, 3)
    instance_id, client = register_instance(api, SLEEP)
    assert client.post(f"/api/v1/instances/{instance_id}/claim", json={"execution_id": first, "attempt": 1}).status_code == 200
    event = {"execution_id": first, "attempt": 1, "at": 1.0, "event": {"kind": "log", "line": "last words"}}

    answer = client.post(f"/api/v1/instances/{instance_id}/claim-after", json={
        "finished": [{"execution_id": first, "finish": success(events=[event])}], "claim": {"execution_id": second, "attempt": 1}})

    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["finished"] == [{"execution_id": first, "attempt": 1, "refused": None}]
    assert body["refused"] is None and body["claim"]["spec"]["execution_id"] == second
    assert Execution.get_by_id(first).status == "success" and Execution.get_by_id(first).output == {"done": True}
    assert [line["line"] for line in api.client.get(f"/api/v1/executions/{first}/logs").get_json()["items"]] == ["last words"]
    assert Execution.get_by_id(second).status == "in-progress"
    assert Attempt.get((Attempt.execution == second) & (Attempt.number == 1)).instance == instance_id

    # A finish already recorded, and a claim of another service's execution: each refused as alone.
    assert api.client.patch("/api/v1/services/mgmt-train-resnet18", json={"min_instances": 0}).status_code == 200
    other = api.client.post("/api/v1/services/mgmt-train-resnet18/executions", json={"function": "noop", "input": {}}).get_json()["id"]
    again = client.post(f"/api/v1/instances/{instance_id}/claim-after", json={
        "finished": [{"execution_id": first, "finish": success()}, {"execution_id": second, "finish": success(attempt=2)}],
        "claim": {"execution_id": other, "attempt": 1}}).get_json()
    assert [(part["execution_id"], part["refused"]["status"], part["refused"]["code"]) for part in again["finished"]] == [
        (first, 409, "invalid_transition"), (second, 409, "stale_attempt")]
    assert again["claim"] is None and again["refused"]["status"] == 404
    assert Execution.get_by_id(second).status == "in-progress" and Execution.get_by_id(other).status == "pending"
    assert Execution.get_by_id(third).status == "pending"


def test_another_instances_token_reaches_none_of_its_parts(api: Any) -> None:
    first, second = enqueue(api, 2)
    owner_id, owner = register_instance(api, SLEEP)
    assert owner.post(f"/api/v1/instances/{owner_id}/claim", json={"execution_id": first, "attempt": 1}).status_code == 200
    intruder_id, intruder = register_instance(api, SLEEP)
    body = {"finished": [{"execution_id": first, "finish": success()}], "claim": {"execution_id": second, "attempt": 1}}

    assert intruder.post(f"/api/v1/instances/{owner_id}/claim-after", json=body).status_code == 401
    answer = intruder.post(f"/api/v1/instances/{intruder_id}/claim-after", json=body).get_json()

    assert answer["finished"][0]["refused"]["status"] == 409  # the attempt runs on the owner
    assert Execution.get_by_id(first).status == "in-progress"
    assert answer["claim"]["spec"]["execution_id"] == second  # its own claim is its own business


@pytest.fixture
def plane(api: Any) -> Iterator[tuple[ControlPlane, list[str]]]:
    """A registered instance's control plane client over a real HTTP server, and three noop executions, the first claimed."""
    executions = enqueue(api, 3)
    instance_id, client = register_instance(api, SLEEP)
    assert client.post(f"/api/v1/instances/{instance_id}/claim", json={"execution_id": executions[0], "attempt": 1}).status_code == 200
    server = make_server("127.0.0.1", 0, api, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    control = ControlPlane(f"http://127.0.0.1:{server.server_port}")
    control.instance_id = instance_id
    control.http.headers["Authorization"] = client.environ_base["HTTP_AUTHORIZATION"]
    try:
        yield control, executions
    finally:
        server.shutdown()


def no_retry(call: Any, _what: str) -> Any:
    return call()


def test_a_finish_waits_for_a_claim_to_take_it_along_or_goes_alone_once_released(plane: tuple[ControlPlane, list[str]]) -> None:
    control, (first, second, third) = plane
    finishes = Finishes(control, no_retry, linger_s=3600.0)  # no finish goes on its own unless released
    finishes.send(first, Finish.model_validate(success()), "first")
    assert finishes.waiting() and Execution.get_by_id(first).status == "in-progress"

    taken = finishes.take()
    assert [pending.execution_id for pending in taken] == [first] and not finishes.waiting()
    answer = control.claim_after([Finished(execution_id=first, finish=taken[0].report)], second, 1)
    finishes.settle(taken, answer.finished)
    assert Execution.get_by_id(first).status == "success" and answer.claim is not None

    # Nothing to claim: released, it goes on its own at once.
    finishes.send(second, Finish.model_validate(success()), "second")
    finishes.release()
    wait_until(lambda: Execution.get_by_id(second).status == "success", 30, "the released finish recorded")

    # A claim that failed as a whole gives its finishes back: they go on their own, first.
    assert control.claim(third, 1).spec.execution_id == third
    finishes.send(third, Finish.model_validate(success()), "third")
    finishes.give_back(finishes.take())
    assert finishes.wait(timeout_s=30) and Execution.get_by_id(third).status == "success"


def test_a_large_finish_is_never_taken_along(plane: tuple[ControlPlane, list[str]]) -> None:
    control, (first, _, _) = plane
    finishes = Finishes(control, no_retry, linger_s=3600.0)
    finishes.send(first, Finish.model_validate(success(traceback="x" * 100_000)), "first")
    assert finishes.take() == []
    assert finishes.wait(timeout_s=30) and Execution.get_by_id(first).status == "success"
