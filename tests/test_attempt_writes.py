"""Writes about an attempt come only from the instance that claimed it, name only its own output
directory, and stay within the caps per attempt; over the real app and database."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import register_instance
from trainfaas.services.control.attempts import output_path
from trainfaas.services.control.reports import log_cap_note, metric_cap_note
from trainfaas.services.store.records import Artifact, Execution, LogLine, MetricSample, Model, StatusLog

SLEEP = "mgmt-train-sleep"


def register(api: Any) -> tuple[str, Any]:
    return register_instance(api, SLEEP)


@pytest.fixture
def two(api: Any) -> dict[str, Any]:
    """Two instances of one service; a trains a sleep model (its attempt 1 is claimed), b is idle."""
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    training = api.client.post(f"/api/v1/models/{model['id']}/train", json={})
    assert training.status_code == 202, training.get_json()
    execution = training.get_json()["id"]
    a, as_a = register(api)
    b, as_b = register(api)
    claim = as_a.post(f"/api/v1/instances/{a}/claim", json={"execution_id": execution, "attempt": 1})
    assert claim.status_code == 200, claim.get_json()
    return {"a": a, "as_a": as_a, "b": b, "as_b": as_b, "execution": execution, "model": model["id"],
            "dir": output_path(api.settings, execution, 1)}


def event(execution: str, kind: str = "log", **fields: Any) -> dict[str, Any]:
    return {"execution_id": execution, "attempt": 1, "at": 1.0, "event": {"kind": kind, **fields}}


def snapshot(execution: str, model: str) -> tuple[Any, ...]:
    row, trained = Execution.get_by_id(execution), Model.get_by_id(model)
    return (row.status, row.attempt, row.output, StatusLog.select().where(StatusLog.execution == execution).count(),
            trained.status, trained.artifact_path, Artifact.select().count(), LogLine.select().count())


def test_only_the_instance_that_claimed_an_attempt_reports_or_ends_it(api: Any, two: dict[str, Any]) -> None:
    execution, b, as_b = two["execution"], two["b"], two["as_b"]
    before = snapshot(execution, two["model"])
    model_path = str(two["dir"] / "model")
    for body in ({"attempt": 1, "outcome": "success", "output": {"model_path": model_path}},
                 {"attempt": 1, "outcome": "failed", "reason": "b says so"},
                 {"attempt": 1, "outcome": "reset", "reason": "b says so"},
                 {"attempt": 1, "outcome": "terminated"}):
        answer = as_b.post(f"/api/v1/instances/{b}/executions/{execution}/finish", json=body)
        assert answer.status_code == 409 and answer.get_json()["error"]["fields"]["attempt"], (body, answer.get_json())
    reply = as_b.post(f"/api/v1/instances/{b}/report", json={"events": [event(execution, line="from b")]}).get_json()
    assert execution in reply["refused"]
    assert snapshot(execution, two["model"]) == before
    finished = two["as_a"].post(f"/api/v1/instances/{two['a']}/executions/{execution}/finish",
                                json={"attempt": 1, "outcome": "success", "output": {"model_path": model_path}})
    assert finished.status_code == 200, finished.get_json()
    assert Model.get_by_id(two["model"]).artifact_path == model_path


def test_a_model_or_checkpoint_outside_the_attempts_directory_is_refused(api: Any, two: dict[str, Any]) -> None:
    execution, a, as_a, home = two["execution"], two["a"], two["as_a"], Path(api.settings.home)
    two["dir"].mkdir(parents=True)
    (two["dir"] / "out").symlink_to(home)
    outside = ["/etc/passwd", str(home / "admin-token"), str(two["dir"] / ".." / "attempt-2" / "model"), "../other",
               str(two["dir"] / "out" / "admin-token"), str(output_path(api.settings, "other", 1)), 7]
    before = snapshot(execution, two["model"])
    for path in outside:
        answer = as_a.post(f"/api/v1/instances/{a}/executions/{execution}/finish",
                           json={"attempt": 1, "outcome": "success", "output": {"model_path": path}})
        assert answer.status_code == 422, (path, answer.get_json())
        assert "output.model_path" in answer.get_json()["error"]["fields"]
    assert snapshot(execution, two["model"]) == before
    events = [event(execution, "checkpoint", path=str(path), step=1) for path in outside[:-1]]
    events.append(event(execution, "checkpoint", path=str(two["dir"] / "checkpoints" / "last.pt"), step=2))
    reply = as_a.post(f"/api/v1/instances/{a}/report", json={"events": events}).get_json()
    assert reply["refused"] == {} and [refused["index"] for refused in reply["rejected"]] == list(range(len(outside) - 1))
    assert [row.step for row in Artifact.select()] == [2]


def test_one_malformed_event_is_refused_by_itself_and_the_rest_stored(api: Any, two: dict[str, Any]) -> None:
    execution, a, as_a = two["execution"], two["a"], two["as_a"]
    events = [event(execution, line="first"), event(execution, "metric", figure="loss", legend="train", x=1, y="many"),
              {"execution_id": execution, "attempt": 1, "event": {"kind": "log", "line": "no time"}},
              event(execution, "gossip", line="?"), event(execution, line="last"),
              event(execution, "metric", figure="loss", legend="train", x=1, y=0.5)]
    answer = as_a.post(f"/api/v1/instances/{a}/report", json={"events": events})
    assert answer.status_code == 200, answer.get_json()
    rejected = answer.get_json()["rejected"]
    assert [refused["index"] for refused in rejected] == [1, 2, 3]
    assert "y" in rejected[0]["why"] and "at" in rejected[1]["why"]
    assert [row.line for row in LogLine.select().order_by(LogLine.id)] == ["first", "last"]
    assert [row.y for row in MetricSample.select()] == [0.5]


@pytest.fixture
def capped(api: Any) -> Any:
    api.settings.max_log_lines, api.settings.max_log_chars, api.settings.max_metric_samples = 5, 30, 3
    return api


def test_past_a_cap_an_attempts_lines_and_samples_are_dropped_with_one_note(capped: Any, two: dict[str, Any]) -> None:
    execution, url, as_a = two["execution"], f"/api/v1/instances/{two['a']}/report", two["as_a"]
    for batch in range(3):
        lines = [event(execution, line=f"{batch}-{n}") for n in range(3)]
        samples = [event(execution, "metric", figure="loss", legend="train", x=batch * 3 + n, y=1) for n in range(3)]
        assert as_a.post(url, json={"events": lines + samples}).get_json() == {"refused": {}, "rejected": []}
    kept = [row.line for row in LogLine.select().order_by(LogLine.id)]
    assert kept == ["0-0", "0-1", "0-2", "1-0", "1-1", log_cap_note(capped.settings), metric_cap_note(capped.settings)]
    assert MetricSample.select().count() == 3
    long = "x" * 40  # past the characters cap of an attempt with room for lines
    LogLine.delete().execute()
    assert as_a.post(url, json={"events": [event(execution, line=long), event(execution, line="y")]}).status_code == 200
    assert [row.line for row in LogLine.select().order_by(LogLine.id)] == [log_cap_note(capped.settings)]


def test_a_page_of_long_log_lines_ends_at_the_characters_cap_and_continues(api: Any, two: dict[str, Any]) -> None:
    api.settings.max_log_page_chars = 25_000
    execution, url = two["execution"], f"/api/v1/instances/{two['a']}/report"
    lines = [event(execution, line=f"{n:04d}" + "x" * 9996) for n in range(7)]
    assert two["as_a"].post(url, json={"events": lines}).get_json()["rejected"] == []
    first = api.client.get(f"/api/v1/executions/{execution}/logs?limit=10000").get_json()
    assert [item["line"][:4] for item in first["items"]] == ["0000", "0001"] and first["next_cursor"]
    after = api.client.get(f"/api/v1/executions/{execution}/logs?after={first['items'][-1]['id']}").get_json()
    assert [item["line"][:4] for item in after["items"]] == ["0002", "0003"]
    seen = [item["line"][:4] for item in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = api.client.get(f"/api/v1/executions/{execution}/logs?cursor={cursor}").get_json()
        seen += [item["line"][:4] for item in page["items"]]
        cursor = page["next_cursor"]
    assert seen == [f"{n:04d}" for n in range(7)]
    api.settings.max_log_page_chars = 10  # a line longer than the page cap still comes, one a page
    assert len(api.client.get(f"/api/v1/executions/{execution}/logs").get_json()["items"]) == 1
