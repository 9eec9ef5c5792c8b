"""A model's status after its trainings, on SQLite and PostgreSQL: a model that holds weights keeps
them, and stays trained, when a later training fails, is aborted or stops before it saves, and says
whose weights it keeps; a pre-trained (imported) model is a base to fine-tune from, not trained itself."""
from __future__ import annotations

import pytest

from trainfaas.services.control import models
from trainfaas.services.control import transitions as states
from trainfaas.services.core.errors import Conflict
from trainfaas.services.core.statuses import ExecutionStatus
from trainfaas.services.store.records import Execution, Model, Service


def queued_training(model: Model) -> Execution:
    service = Service.get_or_create(name="mgmt-train-sleep", defaults={"architecture": "sleep"})[0]
    row = Execution.create(service=service, model=model, function="train_model", timeout_s=60, drain_time_s=5, on_reset="fail",
                           max_attempts=1)
    return states.queue(row.id, then=models.follow)


def ended(model: Model, status: ExecutionStatus, output: dict | None = None) -> Execution:
    execution = queued_training(model)
    states.claim(execution.id, 1, "a", then=models.follow)
    states.finish(execution.id, 1, status, "ended", then=models.follow, output=output)
    return execution


def test_a_failed_training_of_a_trained_model_keeps_its_weights_and_says_so(database_url: str) -> None:
    model = Model.create(name="m", architecture="sleep", task="diagnostic")
    first = ended(model, ExecutionStatus.SUCCESS, {"model_path": "/w1", "metrics": {"loss": 0.5}})
    second = ended(model, ExecutionStatus.FAILED)
    kept = Model.get_by_id(model.id)
    assert (kept.status, kept.artifact_path, kept.metrics) == ("trained", "/w1", {"loss": 0.5})
    assert kept.status_message == f"last training {second.id} failed; keeping the weights of {first.id}"

    stopped = ended(model, ExecutionStatus.TERMINATED)
    assert Model.get_by_id(model.id).status == "trained"
    assert f"last training {stopped.id} terminated before it saved a model; keeping the weights of {first.id}" \
        == Model.get_by_id(model.id).status_message
    ended(model, ExecutionStatus.SUCCESS, {"model_path": "/w2"})
    assert (Model.get_by_id(model.id).artifact_path, Model.get_by_id(model.id).status_message) == ("/w2", None)


def test_a_failed_first_training_leaves_the_model_failed(database_url: str) -> None:
    model = Model.create(name="m", architecture="sleep", task="diagnostic")
    failed = ended(model, ExecutionStatus.FAILED)
    row = Model.get_by_id(model.id)
    assert (row.status, row.artifact_path, row.status_message) == ("failed", None, f"last training {failed.id} failed")


def test_an_aborted_training_of_a_fine_tuned_model_keeps_its_weights(database_url: str) -> None:
    model = Model.create(name="m", architecture="sleep", task="diagnostic")
    first = ended(model, ExecutionStatus.SUCCESS, {"model_path": "/w1"})
    execution = queued_training(model)
    states.claim(execution.id, 1, "a", then=models.follow)
    assert Model.get_by_id(model.id).status == "training"
    states.reset(execution.id, 1, "instance lost", then=models.follow)  # on_reset fail: aborted
    assert Execution.get_by_id(execution.id).status == "aborted"
    row = Model.get_by_id(model.id)
    assert (row.status, row.artifact_path) == ("trained", "/w1")
    assert row.status_message == f"last training {execution.id} aborted; keeping the weights of {first.id}"


def test_a_pre_trained_model_is_fine_tuned_through_a_new_model_not_trained_itself(database_url: str) -> None:
    imported = Model.create(name="i", architecture="sleep", task="diagnostic", status="pre-trained", artifact_path="/imported",
                            imported_from="weights.pt")
    with pytest.raises(Conflict, match=f"from_model {imported.id}"):
        models.start_training(imported.id)
    assert Model.get_by_id(imported.id).status == "pre-trained"
    assert models._trained_base(imported.id, "sleep").id == imported.id
