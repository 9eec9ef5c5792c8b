"""Why is my training still pending? A waiting execution's place in its service's queue, what holds
it, and when it may start."""
from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import wait_until
from tests.test_cli import run
from trainfaas.services.cli.waiting import ordinal, usage_words, waiting_line
from trainfaas.services.control.waiting import estimate_wait

SERVICE = "mgmt-train-sleep"


def test_the_estimate_is_the_median_run_time_times_what_must_end_first_over_the_slots() -> None:
    assert estimate_wait([10, 30, 20], ahead=0, running=0, slots=1).wait_s == 0  # a free slot
    assert estimate_wait([10, 30, 20], ahead=0, running=1, slots=1).wait_s == 20  # one running ahead
    assert estimate_wait([10, 30, 20], ahead=2, running=1, slots=1).wait_s == 60
    assert estimate_wait([10, 30, 20, 40], ahead=3, running=2, slots=2).wait_s == 25 * 4 / 2
    assert estimate_wait([60], ahead=1, running=1, slots=4).wait_s == 0  # two slots still free
    none = estimate_wait([], ahead=3, running=1, slots=1)
    assert none.wait_s is None and "no history" in none.reason
    assert estimate_wait([5], ahead=0, running=0, slots=0).wait_s is None


def test_the_cli_says_it_in_one_line() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
    waiting = {"position": 3, "service": "mgmt-train-resnet18", "blocked_by": "paused", "instances": 1, "max_instances": 2,
               "estimated_wait_s": 240.0}
    assert waiting_line(waiting) == "waiting: 3rd in queue of mgmt-train-resnet18; service paused; 1/2 instances; starts in ~4 min"
    assert waiting_line({**waiting, "blocked_by": None, "estimated_wait_s": None}).endswith("1/2 instances; no start estimate")
    assert usage_words({"usage": None}) == "-"
    assert usage_words({"usage": {"peak_rss_mb": 812.4, "mean_cpu_percent": 93.0, "peak_gpu_mem_mb": 2048.0, "mean_gpu_util": 71.0,
                                  "samples": 4}}) == "peak 812 MB, CPU 93%, GPU 2048 MB 71%"


def _train(api: Any, name: str) -> dict[str, Any]:
    model = api.client.post("/api/v1/models", json={"name": name, "architecture": "sleep", "configuration": {"steps": 10}}).get_json()
    response = api.client.post(f"/api/v1/models/{model['id']}/train", json={})
    assert response.status_code == 202, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def _waiting(api: Any, execution_id: str) -> Any:
    response = api.client.get(f"/api/v1/executions/{execution_id}")
    assert response.status_code == 200
    return response.get_json()["waiting"]


def test_positions_follow_the_order_instances_take_and_a_rerun_goes_to_the_back(api: Any) -> None:
    assert api.client.patch(f"/api/v1/services/{SERVICE}", json={"min_instances": 0, "paused": True}).status_code == 200
    first, second, third = (_train(api, name) for name in ("a", "b", "c"))
    assert [_waiting(api, e["id"])["position"] for e in (first, second, third)] == [1, 2, 3]
    held = _waiting(api, second["id"])
    assert (held["queued"], held["blocked_by"], held["estimated_wait_s"], held["health"]) == (3, "paused", None, "warning")
    assert held["estimated_start_at"] is None and "paused" in held["estimate_reason"]

    # The first stops, and runs again: it enters the queue behind the others.
    assert api.client.post(f"/api/v1/executions/{first['id']}/terminate").status_code == 202
    assert _waiting(api, first["id"]) is None
    assert api.client.post(f"/api/v1/executions/{first['id']}/rerun").status_code == 202
    assert [_waiting(api, e["id"])["position"] for e in (second, third, first)] == [1, 2, 3]

    # Another project's token does not reach it at all.
    api.client.post("/api/v1/projects", json={"name": "other"})
    other = api.client.post("/api/v1/tokens", json={"scope": "read", "project": "other"}).get_json()["token"]
    assert api.as_(other).get(f"/api/v1/executions/{second['id']}").status_code == 404


def test_a_service_that_allows_no_instance_says_so(api: Any) -> None:
    assert api.client.patch(f"/api/v1/services/{SERVICE}", json={"min_instances": 0, "max_instances": 0}).status_code == 200
    waiting = _waiting(api, _train(api, "a")["id"])
    assert (waiting["blocked_by"], waiting["max_instances"], waiting["estimated_wait_s"]) == ("no_instances_allowed", 0, None)


@pytest.mark.stack
def test_a_waiting_training_says_where_it_is_what_holds_it_and_when_it_starts(stack: Any) -> None:
    client = stack.client
    client.update_service(SERVICE, scaling_type="fixed", min_instances=1, max_instances=1, concurrency=1)
    quick = client.train(client.create_model("quick", "sleep", configuration={"seconds": 0.2, "steps": 1})["id"])
    assert client.wait(quick["id"], timeout_s=120)["status"] == "success"  # the history the estimate takes
    long = client.train(client.create_model("long", "sleep", configuration={"seconds": 600, "steps": 600})["id"])
    wait_until(lambda: client.get_execution(long["id"])["status"] == "in-progress", timeout_s=120, what="the long training to run")
    assert client.waiting(long["id"]) is None
    behind = [client.train(client.create_model(name, "sleep", configuration={"seconds": 1, "steps": 1})["id"]) for name in "bc"]

    first, second = (client.waiting(e["id"]) for e in behind)
    assert (first["position"], second["position"], first["queued"]) == (1, 2, 2)
    assert (first["blocked_by"], first["instances"], first["max_instances"], first["running"]) == ("at_max_instances", 1, 1, 1)
    assert first["estimated_wait_s"] > 0 and second["estimated_wait_s"] > first["estimated_wait_s"]
    assert "median run time" in first["estimate_reason"] and first["estimated_start_at"]
    shown = run(stack, "executions", "show", behind[1]["id"], columns=200).output
    assert "waiting: 2nd in queue of mgmt-train-sleep; all instances busy; 1/1 instances; starts in ~" in shown

    client.pause_service(SERVICE)
    paused = client.waiting(behind[0]["id"])
    assert (paused["blocked_by"], paused["estimated_wait_s"], paused["health"]) == ("paused", None, "warning")
    assert "service paused" in run(stack, "executions", "show", behind[0]["id"], columns=200).output

    client.update_service(SERVICE, paused=False)
    client.update_project("default", max_running=1)
    limited = client.waiting(behind[0]["id"])
    assert limited["blocked_by"] == "project_running_limit" and "max_running 1" in limited["reason"]
    assert limited["position"] == 1 and limited["estimated_wait_s"] is None
    client.terminate(long["id"])
