"""Deleting executions and models: only ended ones (409 otherwise, naming what blocks), every row
and every file of theirs and nothing else — not another project's, not what a link inside points to."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.test_api_access import project_tokens
from trainfaas.services.store.records import Attempt, Execution, LogLine, MetricSample, Model, StatusLog, now_s


def training(api: Any, client: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    client = client or api.client
    model = client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    execution = client.post(f"/api/v1/models/{model['id']}/train", json={}).get_json()
    return model, execution


def files_of(api: Any, execution_id: str, outside: Path) -> Path:
    """An attempt folder with a file, and a link inside it to a file outside it."""
    folder = Path(api.settings.home) / "executions" / execution_id / "attempt-1"
    folder.mkdir(parents=True)
    (folder / "last.pt").write_bytes(b"weights")
    os.symlink(outside, folder / "link")
    for entity, fields in ((LogLine, {"line": "hello"}), (MetricSample, {"figure": "loss", "legend": "train", "x": 1, "y": 0.5})):
        entity.create(execution=execution_id, attempt=1, at=now_s(), **fields)
    Attempt.create(execution=execution_id, number=1, instance="i")
    return folder.parent


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "keep.txt"
    path.write_text("not trainfaas's")
    return path


def test_an_ended_execution_is_deleted_with_its_rows_and_files_but_not_what_a_link_points_to(api: Any, outside: Path) -> None:
    assert api.client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0}).status_code == 200
    _, execution = training(api)
    folder = files_of(api, execution["id"], outside)
    busy = api.client.delete(f"/api/v1/executions/{execution['id']}")
    assert busy.status_code == 409 and busy.get_json()["error"]["fields"]["status"] == "pending" and folder.exists()

    assert api.client.post(f"/api/v1/executions/{execution['id']}/terminate").status_code == 202
    deleted = api.client.delete(f"/api/v1/executions/{execution['id'][:8]}")
    assert deleted.status_code == 200 and deleted.get_json()["id"] == execution["id"]
    assert not folder.exists() and outside.read_text() == "not trainfaas's"
    for entity in (Execution, StatusLog, Attempt, LogLine, MetricSample):
        assert entity.select().count() == 0, entity.__name__
    assert api.client.get(f"/api/v1/executions/{execution['id']}").status_code == 404


def test_a_model_is_deleted_with_its_trainings_only_when_none_runs_and_none_builds_on_it(api: Any, outside: Path) -> None:
    assert api.client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0}).status_code == 200
    model, execution = training(api)
    folder = files_of(api, execution["id"], outside)
    busy = api.client.delete(f"/api/v1/models/{model['id']}")
    assert busy.status_code == 409 and busy.get_json()["error"]["fields"]["execution_id"] == execution["id"]
    assert api.client.post(f"/api/v1/executions/{execution['id']}/terminate").status_code == 202

    Model.update(status="trained", artifact_path=str(folder / "attempt-1")).where(Model.id == model["id"]).execute()
    holds = api.client.delete(f"/api/v1/executions/{execution['id']}")
    assert holds.status_code == 409 and holds.get_json()["error"]["fields"]["model_id"] == model["id"]
    child = api.client.post("/api/v1/models", json={"name": "child", "architecture": "sleep", "from_model": model["id"]})
    assert child.status_code == 201, child.get_json()
    based = api.client.delete(f"/api/v1/models/{model['id']}")
    assert based.status_code == 409 and based.get_json()["error"]["fields"]["model_id"] == child.get_json()["id"]

    assert api.client.delete(f"/api/v1/models/{child.get_json()['id']}").status_code == 200
    assert api.client.delete(f"/api/v1/models/{model['id']}").status_code == 200
    assert Model.select().count() == 0 and Execution.select().count() == 0 and not folder.exists()
    assert outside.exists()


def test_deleting_never_reaches_another_project(api: Any, outside: Path) -> None:
    assert api.client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0}).status_code == 200
    tokens = {name: project_tokens(api, name) for name in ("a", "b")}
    model, execution = training(api, api.as_(tokens["a"]["write"]))
    api.as_(tokens["a"]["write"]).post(f"/api/v1/executions/{execution['id']}/terminate")
    folder = files_of(api, execution["id"], outside)
    stranger, reader = api.as_(tokens["b"]["write"]), api.as_(tokens["a"]["read"])
    assert stranger.delete(f"/api/v1/executions/{execution['id']}").status_code == 404
    assert stranger.delete(f"/api/v1/models/{model['id']}").status_code == 404
    assert reader.delete(f"/api/v1/models/{model['id']}").status_code == 403
    assert folder.exists() and Model.select().count() == 1 and Execution.select().count() == 1
