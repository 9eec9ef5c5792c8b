"""Instance statuses change only through their transition table: an instance that has ended
never comes back, whatever it sends. Over the real app and database."""
from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.conftest import register_instance, start_instance, wait_until
from trainfaas.services.control import instances
from trainfaas.services.control.attempts import output_path
from trainfaas.services.core.errors import InvalidTransition
from trainfaas.services.core.protocol import Heartbeat, RunningEntry
from trainfaas.services.core.statuses import ENDED_INSTANCE, InstanceStatus
from trainfaas.services.store.records import Execution, Instance, Service
from trainfaas.services.worker.control_plane import ControlPlane
from trainfaas.services.worker.heartbeats import Heartbeats

SLEEP = "mgmt-train-sleep"


def register(api: Any, **body: Any) -> tuple[str, Any]:
    """Register an instance of the sleep service; return its id and a client with its token."""
    return register_instance(api, SLEEP, **body)


@pytest.fixture
def running(api: Any) -> dict[str, Any]:
    """A registered instance that has claimed a noop execution."""
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    execution = api.client.post(f"/api/v1/services/{SLEEP}/executions", json={"function": "noop", "input": {}}).get_json()
    instance_id, client = register(api)
    claim = client.post(f"/api/v1/instances/{instance_id}/claim", json={"execution_id": execution["id"], "attempt": 1})
    assert claim.status_code == 200, claim.get_json()
    beat = {"status": "running", "running": [{"execution_id": execution["id"], "attempt": 1, "pid": 4242}]}
    return {"id": instance_id, "client": client, "execution": execution["id"], "beat": beat}


def test_a_heartbeat_never_brings_back_a_lost_instance_and_tells_it_to_go(api: Any, running: dict[str, Any]) -> None:
    instance_id, client = running["id"], running["client"]
    assert instances.transition(instance_id, InstanceStatus.LOST, last_exit_reason="heartbeat lost", running=[])
    before = Instance.get_by_id(instance_id)

    answer = client.post(f"/api/v1/instances/{instance_id}/heartbeat", json=running["beat"])

    assert answer.status_code == 200
    assert answer.get_json() == {"stop": [], "abandon": [running["execution"]], "paused": True, "drain": True, "unknown": []}
    after = Instance.get_by_id(instance_id)
    assert (after.status, after.heartbeat_at, after.running) == ("lost", before.heartbeat_at, [])
    gone = client.post(f"/api/v1/instances/{instance_id}/deregister", json={"reason": "drained"})
    assert gone.get_json() == {"status": "lost"}  # an exit after the loss does not rewrite it
    assert Instance.get_by_id(instance_id).status == "lost"


def test_a_heartbeat_that_loses_the_race_with_the_reaper_changes_nothing(api: Any, running: dict[str, Any]) -> None:
    seen_alive = Instance.get_by_id(running["id"])  # as the API loaded it, before the reaper wrote
    assert instances.transition(running["id"], InstanceStatus.LOST)

    answer = instances.heartbeat(seen_alive, Heartbeat(status=InstanceStatus.FULL, running=[
        RunningEntry(execution_id=running["execution"], attempt=1), RunningEntry(execution_id="e", attempt=1)]))

    assert answer.drain and answer.abandon == [running["execution"]] and answer.unknown == ["e"]
    assert Instance.get_by_id(running["id"]).status == "lost"


def test_an_instance_asked_to_go_stays_terminating_whatever_its_heartbeat_says(api: Any, running: dict[str, Any]) -> None:
    assert instances.transition(running["id"], InstanceStatus.TERMINATING)
    answer = running["client"].post(f"/api/v1/instances/{running['id']}/heartbeat", json=running["beat"]).get_json()
    assert answer == {"stop": [], "abandon": [], "paused": False, "drain": True, "unknown": []}
    assert Instance.get_by_id(running["id"]).status == "terminating"


@pytest.mark.parametrize("retire", ["stopping", "instance_type", "backend"])
def test_an_instance_asked_to_go_or_of_what_its_service_no_longer_has_claims_nothing(api: Any, retire: str) -> None:
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    execution = api.client.post(f"/api/v1/services/{SLEEP}/executions", json={"function": "noop", "input": {}}).get_json()
    instance_id, client = register(api)
    assert Instance.get_by_id(instance_id).instance_type == "default"  # the service's, when it was started
    if retire == "stopping":
        assert instances.transition(instance_id, InstanceStatus.TERMINATING)
    else:
        change = {"instance_type": "regular-xs"} if retire == "instance_type" else {"backend": "docker"}
        assert api.client.patch(f"/api/v1/services/{SLEEP}", json=change).status_code == 200

    claim = client.post(f"/api/v1/instances/{instance_id}/claim", json={"execution_id": execution["id"], "attempt": 1})

    assert claim.status_code == 409 and claim.get_json()["error"]["code"] == "instance_retired", claim.get_json()
    assert Execution.get_by_id(execution["id"]).status == "pending"  # for the instances that replace it


def test_a_paused_service_turns_heartbeats_into_paused_and_back(api: Any, running: dict[str, Any]) -> None:
    url = f"/api/v1/instances/{running['id']}/heartbeat"
    api.client.post(f"/api/v1/services/{SLEEP}/pause")
    assert running["client"].post(url, json=running["beat"]).get_json()["paused"] is True
    assert Instance.get_by_id(running["id"]).status == "paused"
    api.client.post(f"/api/v1/services/{SLEEP}/resume")
    assert running["client"].post(url, json={**running["beat"], "status": "full"}).get_json()["paused"] is False
    assert Instance.get_by_id(running["id"]).status == "full"


def test_a_row_the_scheduler_gave_up_is_not_adopted_by_a_late_registration(api: Any) -> None:
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    (given_up, given_up_token), (asked_to_go, asked_to_go_token) = (start_instance(api, SLEEP) for _ in range(2))
    assert instances.transition(given_up, InstanceStatus.FAILED, last_exit_reason="did not register")
    assert instances.transition(asked_to_go, InstanceStatus.TERMINATING)

    late = api.as_(given_up_token).post("/api/v1/instances", json={"service": SLEEP, "instance_id": given_up})
    assert late.status_code == 409 and Instance.get_by_id(given_up).status == "failed"
    adopted = api.as_(asked_to_go_token).post("/api/v1/instances", json={"service": SLEEP, "instance_id": asked_to_go})
    assert adopted.status_code == 201 and adopted.get_json()["status"] == "terminating"


@pytest.mark.parametrize("ended", sorted(ENDED_INSTANCE))
def test_the_table_refuses_every_move_out_of_an_end(database_url: str, ended: InstanceStatus) -> None:
    instance = Instance.create(service=Service.create(name=SLEEP, architecture="sleep"))
    assert instances.transition(instance.id, ended)
    for status in InstanceStatus:
        with pytest.raises(InvalidTransition):
            instances.transition(instance.id, status, expect={ended})
        assert not instances.transition(instance.id, status)  # from wherever it may: not from here
    assert Instance.get_by_id(instance.id).status == ended


def test_figures_that_are_not_numbers_are_stored_as_null_or_left_out(api: Any, running: dict[str, Any]) -> None:
    """A diverged training reports NaN: JSON has no such number, so a sample is left out and a
    checkpoint's or the final metrics' figure is stored as null; the report is not refused."""
    instance_id, client, execution = running["id"], running["client"], running["execution"]

    def post(path: str, text: str) -> Any:
        return client.post(f"/api/v1/instances/{instance_id}{path}", data=text, content_type="application/json")

    event = '{"execution_id": "%s", "attempt": 1, "at": 1.0, "event": %s}'
    checkpoint = json.dumps(str(output_path(api.settings, execution, 1) / "checkpoints" / "last.pt"))
    events = [event % (execution, body) for body in (
        '{"kind": "metric", "figure": "loss", "legend": "train", "x": 1, "y": NaN}',
        '{"kind": "metric", "figure": "loss", "legend": "train", "x": 2, "y": 0.5}',
        '{"kind": "checkpoint", "path": ' + checkpoint + ', "step": 2, "metrics": {"loss": Infinity, "acc": 0.5}}')]
    reported = post("/report", '{"events": [' + ", ".join(events) + ']}')
    assert reported.status_code == 200 and reported.get_json()["refused"] == {}, reported.get_json()
    finished = post(f"/executions/{execution}/finish", '{"attempt": 1, "outcome": "success", "output": {"metrics": {"loss": NaN}}}')
    assert finished.status_code == 200, finished.get_json()

    samples = api.client.get(f"/api/v1/executions/{execution}/metrics").get_json()["items"]
    assert [(sample["x"], sample["y"]) for sample in samples] == [(2, 0.5)], samples
    artifacts = api.client.get(f"/api/v1/executions/{execution}/artifacts").get_json()["items"]
    assert [artifact["metrics"] for artifact in artifacts] == [{"loss": None, "acc": 0.5}], artifacts
    shown = api.client.get(f"/api/v1/executions/{execution}")
    assert shown.status_code == 200 and shown.get_json()["output"] == {"metrics": {"loss": None}}, shown.get_data()


def test_heartbeats_go_from_their_own_thread_while_the_main_loop_waits(api: Any, running: dict[str, Any]) -> None:
    """Over a real HTTP server: the heartbeat thread keeps beating with nothing else running, and
    each answer comes with the beat it answers."""
    server = make_server("127.0.0.1", 0, api, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    plane = ControlPlane(f"http://127.0.0.1:{server.server_port}")
    plane.instance_id = running["id"]
    plane.http.headers["Authorization"] = running["client"].environ_base["HTTP_AUTHORIZATION"]
    beats = Heartbeats(plane, interval_s=0.05)
    beats.beat = Heartbeat.model_validate(running["beat"])
    seen: list[Any] = []

    def answered() -> bool:
        seen.extend(beats.replies())
        return len(seen) >= 3

    beats.start()
    try:
        wait_until(answered, 30, "three heartbeats answered")
    finally:
        beats.stop()
        server.shutdown()
    assert all(beat == beats.beat and answer.abandon == [] for beat, answer in seen), seen
    assert Instance.get_by_id(running["id"]).heartbeat_at is not None


def test_heartbeat_ignores_other_services_executions(api: Any, running: dict[str, Any]) -> None:
    """A heartbeat counts only the attempts its instance claimed: another service's execution, one
    of its own service that another instance claimed, and ids it made up are ignored, named in
    ``unknown``, and nothing of theirs changes (not even a stop request read out)."""
    resnet = "mgmt-train-resnet18"
    assert api.client.patch(f"/api/v1/services/{resnet}", json={"min_instances": 0}).status_code == 200
    other_service = api.client.post(f"/api/v1/services/{resnet}/executions", json={"function": "noop", "input": {}}).get_json()
    same_service = api.client.post(f"/api/v1/services/{SLEEP}/executions", json={"function": "noop", "input": {}}).get_json()
    resnet_id, as_resnet = register_instance(api, resnet)
    sibling_id, as_sibling = register(api)
    for instance_id, client, execution in ((resnet_id, as_resnet, other_service), (sibling_id, as_sibling, same_service)):
        claimed = client.post(f"/api/v1/instances/{instance_id}/claim", json={"execution_id": execution["id"], "attempt": 1})
        assert claimed.status_code == 200, claimed.get_json()
        assert api.client.post(f"/api/v1/executions/{execution['id']}/terminate").status_code == 202
    foreign = [other_service["id"], same_service["id"], "f" * 32]
    before = {e: Execution.get_by_id(e).__data__ for e in foreign[:2]}
    others = {i: Instance.get_by_id(i).__data__ for i in (resnet_id, sibling_id)}
    beat = {"status": "running", "running": [*running["beat"]["running"],
                                             *({"execution_id": e, "attempt": 1, "pid": 1} for e in foreign)]}

    answer = running["client"].post(f"/api/v1/instances/{running['id']}/heartbeat", json=beat)

    assert answer.status_code == 200
    assert answer.get_json() == {"stop": [], "abandon": [], "paused": False, "drain": False, "unknown": foreign}
    assert [entry["execution_id"] for entry in Instance.get_by_id(running["id"]).running] == [running["execution"]]
    assert {e: Execution.get_by_id(e).__data__ for e in foreign[:2]} == before
    assert {i: Instance.get_by_id(i).__data__ for i in (resnet_id, sibling_id)} == others
    # Its own attempt is still acted on: a stop request reaches it; an attempt number of its own
    # execution that it never claimed is unknown.
    assert api.client.post(f"/api/v1/executions/{running['execution']}/terminate").status_code == 202
    own = running["client"].post(f"/api/v1/instances/{running['id']}/heartbeat", json=beat).get_json()
    assert (own["stop"], own["unknown"]) == ([running["execution"]], foreign)
    stale = {"running": [{"execution_id": running["execution"], "attempt": 2}]}
    assert running["client"].post(f"/api/v1/instances/{running['id']}/heartbeat", json=stale).get_json()["unknown"] == [running["execution"]]
