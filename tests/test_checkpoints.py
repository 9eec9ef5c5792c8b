"""Checkpoints as files of their own: what an execution keeps (its best and its newest
keep_checkpoints), a model made of one that never depends on its file, deleting one (never the one
a rerun resumes from), ids by unique prefix and only within the caller's project; and removing an
execution from training. Over the real app, database and Redis, with a registered instance
reporting as an instance does."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import register_instance
from tests.test_api_access import project_tokens
from trainfaas.adapters.torchvision_classification import TorchvisionClassification
from trainfaas.functions.context import keep
from trainfaas.services.control.attempts import last_checkpoint, output_path
from trainfaas.services.core.errors import AdapterError
from trainfaas.services.store.records import Artifact, Execution, Model

SLEEP = "mgmt-train-sleep"


@pytest.fixture
def running(api: Any) -> dict[str, Any]:
    """A sleep training of project a that keeps 2 checkpoints, its attempt 1 claimed by an instance."""
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    tokens = project_tokens(api, "a")
    writer = api.as_(tokens["write"])
    model = writer.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    training = writer.post(f"/api/v1/models/{model['id']}/train", json={"execution": {"keep_checkpoints": 2}})
    assert training.status_code == 202, training.get_json()
    execution = training.get_json()["id"]
    instance, as_instance = register_instance(api, SLEEP)
    claim = as_instance.post(f"/api/v1/instances/{instance}/claim", json={"execution_id": execution, "attempt": 1})
    assert claim.status_code == 200, claim.get_json()
    return {"writer": writer, "tokens": tokens, "model": model["id"], "execution": execution, "instance": instance,
            "as_instance": as_instance, "dir": output_path(api.settings, execution, 1) / "checkpoints"}


def report(running: dict[str, Any], step: int, best: bool = False, attempt: int = 1) -> Path:
    """Write checkpoint ``step`` as the work process keeps it and report it as the instance does."""
    path = running["dir"].parent.parent / f"attempt-{attempt}" / "checkpoints" / f"step-{step:012d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"step": step}))
    event = {"kind": "checkpoint", "path": str(path), "step": step, "metrics": {"loss": 1.0 / step}, "best": best}
    reply = running["as_instance"].post(f"/api/v1/instances/{running['instance']}/report",
                                        json={"events": [{"execution_id": running["execution"], "attempt": attempt, "at": 1.0 + step,
                                                          "event": event}]})
    assert reply.status_code == 200 and not reply.get_json()["rejected"] and not reply.get_json()["refused"], reply.get_json()
    return path


def listed(client: Any, execution: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/executions/{execution}/checkpoints")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]  # type: ignore[no-any-return]


def test_an_execution_keeps_its_best_and_newest_checkpoints_and_deletes_the_others_files(api: Any, running: dict[str, Any]) -> None:
    paths = {step: report(running, step, best=step == 2) for step in range(1, 6)}
    items = listed(running["writer"], running["execution"])
    assert [(item["step"], item["is_best"], item["is_last"]) for item in items] == [(2, True, False), (4, False, False), (5, False, True)]
    assert all(item["size"] == len(json.dumps({"step": item["step"]})) and item["metrics"]["loss"] == 1.0 / item["step"]
               and item["attempt"] == 1 and item["created"] for item in items)
    assert [step for step, path in paths.items() if path.exists()] == [2, 4, 5]
    assert Artifact.select().where(Artifact.kind == "checkpoint").count() == 3

    report(running, 6, best=True)  # a new best: the old one is no longer kept
    items = listed(running["writer"], running["execution"])
    assert [(item["step"], item["is_best"]) for item in items] == [(5, False), (6, True)]
    assert not paths[2].exists() and not paths[4].exists()
    report(running, 6)  # the same file reported again (as last after best): one row, still the best
    assert [(item["step"], item["is_best"], item["is_last"]) for item in listed(running["writer"], running["execution"])] == [
        (5, False, False), (6, True, True)]


def test_a_checkpoint_becomes_a_trained_model_that_does_not_depend_on_its_file(api: Any, running: dict[str, Any]) -> None:
    report(running, 3)
    checkpoint = listed(running["writer"], running["execution"])[0]
    made = running["writer"].post(f"/api/v1/checkpoints/{checkpoint['id'][:6]}/model", json={"name": "at-three"})
    assert made.status_code == 201, made.get_json()
    model = made.get_json()
    assert (model["status"], model["name"], model["project"], model["architecture"]) == ("trained", "at-three", "a", "sleep")
    assert (model["source_execution"], model["source_step"], model["metrics"]) == (running["execution"], 3, {"loss": 1.0 / 3})
    folder = Path(model["artifact_path"])
    assert folder == (Path(api.settings.home) / "models" / model["id"]).resolve()
    assert json.loads((folder / "model.json").read_text()) == {"architecture": "sleep", "steps": 3}

    deleted = running["writer"].delete(f"/api/v1/checkpoints/{checkpoint['id']}")
    assert deleted.status_code == 200 and deleted.get_json()["id"] == checkpoint["id"]
    assert (folder / "model.json").exists() and listed(running["writer"], running["execution"]) == []
    fine_tune = running["writer"].post("/api/v1/models", json={"name": "tuned", "architecture": "sleep", "from_model": model["id"]})
    assert fine_tune.status_code == 201 and fine_tune.get_json()["base_model"] == model["id"], fine_tune.get_json()
    report(running, 4)
    default_name = running["writer"].post(f"/api/v1/checkpoints/{listed(running['writer'], running['execution'])[0]['id']}/model")
    assert default_name.status_code == 201 and default_name.get_json()["name"] == "m-step-4", default_name.get_json()

    assert running["writer"].delete(f"/api/v1/models/{fine_tune.get_json()['id']}").status_code == 200
    assert running["writer"].delete(f"/api/v1/models/{model['id']}").status_code == 200
    assert not folder.exists()


def test_the_checkpoint_a_rerun_resumes_from_cannot_be_deleted(api: Any, running: dict[str, Any]) -> None:
    older, newest = report(running, 1), report(running, 2)
    ended = running["as_instance"].post(f"/api/v1/instances/{running['instance']}/executions/{running['execution']}/finish",
                                        json={"attempt": 1, "outcome": "failed", "reason": "broken"})
    assert ended.status_code == 200, ended.get_json()
    assert running["writer"].post(f"/api/v1/executions/{running['execution']}/rerun", json={}).status_code == 202
    resumed = last_checkpoint(running["execution"], 2)
    assert resumed is not None and resumed.path == str(newest)
    refused = running["writer"].delete(f"/api/v1/checkpoints/{resumed.uid}")
    assert refused.status_code == 409 and refused.get_json()["error"]["fields"]["checkpoint_id"] == resumed.uid
    assert newest.exists() and Artifact.get_or_none(Artifact.uid == resumed.uid) is not None
    other = Artifact.get(Artifact.path == str(older))
    assert running["writer"].delete(f"/api/v1/checkpoints/{other.uid}").status_code == 200 and not older.exists()
    assert running["writer"].post(f"/api/v1/executions/{running['execution']}/terminate").status_code == 202
    assert running["writer"].delete(f"/api/v1/checkpoints/{resumed.uid}").status_code == 200 and not newest.exists()


def test_another_projects_checkpoints_are_not_found_and_bad_input_is_refused(api: Any, running: dict[str, Any]) -> None:
    report(running, 1)
    checkpoint = listed(running["writer"], running["execution"])[0]["id"]
    other = api.as_(project_tokens(api, "b")["write"])
    for method, path in (("get", f"/api/v1/executions/{running['execution']}/checkpoints"),
                         ("post", f"/api/v1/checkpoints/{checkpoint}/model"), ("delete", f"/api/v1/checkpoints/{checkpoint}"),
                         ("delete", f"/api/v1/checkpoints/{checkpoint[:4]}"), ("post", f"/api/v1/executions/{running['execution']}/remove")):
        response = getattr(other, method)(path)
        assert response.status_code == 404, (method, path, response.get_json())
    reader = api.as_(running["tokens"]["read"])
    assert reader.delete(f"/api/v1/checkpoints/{checkpoint}").status_code == 403
    assert running["writer"].delete("/api/v1/checkpoints/abc").status_code == 404
    for body, field in (({"name": ""}, "name"), ({"name": "x" * 201}, "name"), ({"weights": "x"}, "weights")):
        response = running["writer"].post(f"/api/v1/checkpoints/{checkpoint}/model", json=body)
        assert response.status_code == 422 and field in response.get_json()["error"]["fields"], response.get_json()
    for settings in ({"keep_checkpoints": 0}, {"keep_checkpoints": 10 ** 6}):
        response = running["writer"].post(f"/api/v1/executions/{running['execution']}/rerun", json={"execution": settings})
        assert response.status_code in (409, 422), response.get_json()
    assert Model.select().count() == 1 and os.path.exists(Artifact.get(Artifact.uid == checkpoint).path)


def test_a_checkpoint_outside_the_attempt_is_not_recorded_and_pruning_deletes_nothing_outside(api: Any, running: dict[str, Any]) -> None:
    outside = Path(api.settings.home) / "keep.txt"
    outside.write_text("not a checkpoint")
    events = [{"execution_id": running["execution"], "attempt": 1, "at": 1.0,
               "event": {"kind": "checkpoint", "path": str(path), "step": 1, "best": True}}
              for path in (outside, running["dir"] / ".." / ".." / "keep.txt", running["dir"] / ".." / ".." / ".." / ".." / "keep.txt")]
    reply = running["as_instance"].post(f"/api/v1/instances/{running['instance']}/report", json={"events": events})
    assert len(reply.get_json()["rejected"]) == 3 and Artifact.select().count() == 0
    for step in range(1, 5):
        report(running, step)
    assert outside.read_text() == "not a checkpoint" and len(listed(running["writer"], running["execution"])) == 2


def test_removing_an_execution_stops_it_and_leaves_it_out_of_the_listings(api: Any, running: dict[str, Any]) -> None:
    writer, execution = running["writer"], running["execution"]
    removed = writer.post(f"/api/v1/executions/{execution[:6]}/remove")
    assert removed.status_code == 202, removed.get_json()
    assert (removed.get_json()["removed"], removed.get_json()["stop_requested"], removed.get_json()["status"]) == (True, True, "in-progress")
    assert [item["id"] for item in writer.get("/api/v1/executions").get_json()["items"]] == []
    assert [item["id"] for item in writer.get("/api/v1/executions?include_removed=true").get_json()["items"]] == [execution]
    finished = running["as_instance"].post(f"/api/v1/instances/{running['instance']}/executions/{execution}/finish",
                                           json={"attempt": 1, "outcome": "terminated"})
    assert finished.status_code == 200 and Execution.get_by_id(execution).status == "terminated"
    again = writer.post(f"/api/v1/executions/{execution}/remove")  # an ended execution: only marked
    assert again.status_code == 202 and again.get_json()["status"] == "terminated"
    assert writer.post(f"/api/v1/executions/{execution}/rerun", json={}).status_code == 202
    assert [item["id"] for item in writer.get("/api/v1/executions").get_json()["items"]] == [execution]
    assert writer.get("/api/v1/executions?include_removed=maybe").status_code == 422


def test_a_waiting_execution_removed_from_training_ends_at_once(api: Any) -> None:
    assert api.client.patch(f"/api/v1/services/{SLEEP}", json={"min_instances": 0}).status_code == 200
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    execution = api.client.post(f"/api/v1/models/{model['id']}/train", json={}).get_json()
    removed = api.client.post(f"/api/v1/executions/{execution['id']}/remove").get_json()
    assert (removed["status"], removed["removed"]) == ("terminated", True)
    assert api.client.get(f"/api/v1/models/{model['id']}").get_json()["status"] == "created"


def test_a_kept_checkpoint_file_never_changes_when_the_adapter_replaces_its_file(tmp_path: Path) -> None:
    last, folder = tmp_path / "last.pt", tmp_path / "out" / "checkpoints"
    last.write_bytes(b"step 1")
    first = keep(last, 1, folder)
    (tmp_path / "next").write_bytes(b"step 2")
    os.replace(tmp_path / "next", last)
    second = keep(last, 2, folder)
    assert (first.name, first.read_bytes(), second.name, second.read_bytes()) == ("step-000000000001.pt", b"step 1",
                                                                                  "step-000000000002.pt", b"step 2")
    assert keep(last, 2, folder) == second and keep(tmp_path, 3, folder) == tmp_path  # a folder is its own


def test_a_vision_checkpoint_becomes_a_model_the_adapter_loads_and_predicts_with(tmp_path: Path, no_network: list[str]) -> None:
    from PIL import Image

    from trainfaas.adapters.torchvision_classification import TorchvisionClassification

    checkpoint = Path(__file__).parent / "fixtures" / "v0_1" / "classification-squeezenet1_1-step7.pt"
    TorchvisionClassification.model_from_checkpoint(checkpoint, tmp_path / "model", "squeezenet1_1", [], {})
    adapter = TorchvisionClassification("squeezenet1_1")
    adapter.load(tmp_path / "model")
    [prediction] = adapter.predict([Image.new("RGB", (16, 16), "white")])
    assert adapter.labels and prediction["label"] in adapter.labels


def test_a_checkpoint_file_replaced_by_a_link_is_not_made_into_a_model(api: Any, running: dict[str, Any]) -> None:
    secret = Path(api.settings.home) / "secret.txt"
    secret.write_text('{"step": 99}')
    path = report(running, 1)
    path.unlink()
    path.symlink_to(secret)  # the adapter swaps its reported file for a link out
    checkpoint = listed(running["writer"], running["execution"])[0]
    assert checkpoint["size"] is None
    refused = running["writer"].post(f"/api/v1/checkpoints/{checkpoint['id']}/model")
    assert refused.status_code == 422 and "checkpoint_id" in refused.get_json()["error"]["fields"], refused.get_json()
    assert Model.select().count() == 1 and not (Path(api.settings.home) / "models").exists()
    for step in range(2, 5):
        report(running, step)
    assert secret.read_text() == '{"step": 99}' and not path.is_symlink()  # pruned: the link, never what it points to


@pytest.mark.parametrize("resume, step", [("best", 2), ("last", 3)])
def test_a_rerun_resumes_from_the_kept_file_it_asks_for(api: Any, running: dict[str, Any], resume: str, step: int) -> None:
    report(running, 1)
    best = report(running, 2)
    report(running, 2, best=True)  # the same step reported again as the best, as the vision adapters do
    last = report(running, 3)
    ended = running["as_instance"].post(f"/api/v1/instances/{running['instance']}/executions/{running['execution']}/finish",
                                        json={"attempt": 1, "outcome": "success", "output": {"metrics": {}}})
    assert ended.status_code == 200, ended.get_json()
    assert running["writer"].post(f"/api/v1/executions/{running['execution']}/rerun", json={"resume": resume}).status_code == 202
    claim = running["as_instance"].post(f"/api/v1/instances/{running['instance']}/claim",
                                        json={"execution_id": running["execution"], "attempt": 2})
    assert claim.status_code == 200, claim.get_json()
    assert claim.get_json()["spec"]["resume_checkpoint"] == str(best if step == 2 else last)
    note = running["writer"].get(f"/api/v1/executions/{running['execution']}").get_json()["status_log"][-1]["message"]
    assert note.startswith(f"resuming from checkpoint at step {step} of attempt 1")


def test_deleting_an_execution_deletes_its_checkpoint_files_and_rows(api: Any, running: dict[str, Any]) -> None:
    paths = [report(running, step) for step in (1, 2)]
    ended = running["as_instance"].post(f"/api/v1/instances/{running['instance']}/executions/{running['execution']}/finish",
                                        json={"attempt": 1, "outcome": "failed", "reason": "broken"})
    assert ended.status_code == 200, ended.get_json()
    assert running["writer"].delete(f"/api/v1/executions/{running['execution']}").status_code == 200
    assert not any(path.exists() for path in paths) and Artifact.select().count() == 0
    assert running["writer"].get(f"/api/v1/executions/{running['execution']}/checkpoints").status_code == 404


def test_a_vision_checkpoint_becomes_a_model_only_as_a_regular_file_never_through_a_link(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("not a checkpoint")
    (tmp_path / "step-7.pt").symlink_to(secret)  # put in the checkpoint's place after the API checked it
    (tmp_path / "model").mkdir()
    with pytest.raises(AdapterError):
        TorchvisionClassification.model_from_checkpoint(tmp_path / "step-7.pt", tmp_path / "model", "resnet18", ["a"], {})
    assert list((tmp_path / "model").iterdir()) == []
    (tmp_path / "step-8.pt").write_bytes(b"weights")
    TorchvisionClassification.model_from_checkpoint(tmp_path / "step-8.pt", tmp_path / "model", "resnet18", ["a"], {})
    assert (tmp_path / "model" / "model.pt").read_bytes() == b"weights"
