"""The execution state machine on SQLite and PostgreSQL: legal moves, compare-and-set, fencing, and the
model status each change writes in its own transaction."""
from __future__ import annotations

import threading

import pytest
import redis

from trainfaas.services.control import attempts, models
from trainfaas.services.control import transitions as states
from trainfaas.services.core.errors import InvalidTransition, StaleAttempt
from trainfaas.services.core.protocol import Finish
from trainfaas.services.core.settings import load_settings
from trainfaas.services.core.statuses import ExecutionStatus, Outcome
from trainfaas.services.store.records import Artifact, Attempt, Execution, Instance, Model, Service, StatusLog


@pytest.fixture
def execution(database_url: str) -> Execution:
    service = Service.create(name="mgmt-train-sleep", architecture="sleep")
    row = Execution.create(service=service, function="noop", timeout_s=60, drain_time_s=5, on_reset="rerun", max_attempts=2)
    return states.queue(row.id)


def log_of(execution_id: str) -> list[tuple[str, int]]:
    return [(r.status, r.attempt) for r in StatusLog.select().where(StatusLog.execution == execution_id).order_by(StatusLog.id)]


def test_a_claimed_execution_moves_to_in_progress_and_opens_an_attempt(execution: Execution) -> None:
    claimed = states.claim(execution.id, 1, "instance-a")
    assert claimed.status == "in-progress" and claimed.started_at is not None
    assert Attempt.get(Attempt.execution == execution.id).instance == "instance-a"
    assert log_of(execution.id) == [("pending", 1), ("in-progress", 1)]


def test_illegal_transitions_raise_and_change_nothing(execution: Execution) -> None:
    with pytest.raises(InvalidTransition):
        states.transition(execution.id, "success", attempt=1, expect=("pending",))
    with pytest.raises(InvalidTransition):
        states.finish(execution.id, 1, "success", "done")  # still pending, not in-progress
    assert Execution.get_by_id(execution.id).status == "pending"
    assert log_of(execution.id) == [("pending", 1)]


def test_only_one_of_two_racing_claims_wins(execution: Execution) -> None:
    outcomes: list[str] = []

    def claim(instance: str) -> None:
        try:
            states.claim(execution.id, 1, instance)
            outcomes.append("won")
        except InvalidTransition:
            outcomes.append("lost")

    threads = [threading.Thread(target=claim, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost", "won"]
    assert Attempt.select().where(Attempt.execution == execution.id).count() == 1


def test_a_reset_with_attempts_left_reruns_as_the_next_attempt_and_fences_the_old_one(execution: Execution) -> None:
    states.claim(execution.id, 1, "a")
    rerun = states.reset(execution.id, 1, "instance a lost")
    assert (rerun.status, rerun.attempt) == ("rerun", 2)
    assert Attempt.get(Attempt.execution == execution.id).outcome == "reset"

    with pytest.raises(StaleAttempt):
        states.finish(execution.id, 1, "success", "late result from the old instance")
    with pytest.raises(StaleAttempt):
        states.check_current(execution.id, 1)
    assert Execution.get_by_id(execution.id).status == "rerun"


def test_a_reset_without_attempts_left_aborts_with_the_reason(execution: Execution) -> None:
    states.claim(execution.id, 1, "a")
    states.reset(execution.id, 1, "first loss")
    states.claim(execution.id, 2, "b")
    aborted = states.reset(execution.id, 2, "second loss")
    assert aborted.status == "aborted" and aborted.attempt == 2
    assert "second loss" in aborted.error and "attempts exhausted (2/2)" in aborted.error


def test_a_reset_after_a_stop_request_ends_as_terminated(execution: Execution) -> None:
    states.claim(execution.id, 1, "a")
    states.request_stop(execution.id)
    assert states.reset(execution.id, 1, "instance gone").status == "terminated"


def test_stopping_a_pending_execution_terminates_it_and_an_ended_one_is_a_conflict(execution: Execution) -> None:
    assert states.request_stop(execution.id).status == "terminated"
    with pytest.raises(InvalidTransition) as conflict:
        states.request_stop(execution.id)
    assert conflict.value.fields == {"status": "terminated"}


def test_a_manual_rerun_of_an_ended_execution_grows_the_attempt_budget(execution: Execution) -> None:
    states.claim(execution.id, 1, "a")
    states.reset(execution.id, 1, "loss")
    states.claim(execution.id, 2, "b")
    states.finish(execution.id, 2, "failed", "bug")
    again = states.rerun(execution.id)
    assert (again.status, again.attempt, again.max_attempts) == ("rerun", 3, 3)
    with pytest.raises(InvalidTransition):
        states.rerun(execution.id)  # not ended


@pytest.fixture
def training(database_url: str) -> Execution:
    """A pending training of a model, queued as the control plane queues one."""
    service = Service.create(name="mgmt-train-sleep", architecture="sleep")
    model = Model.create(name="m", architecture="sleep", task="diagnostic")
    row = Execution.create(service=service, model=model, function="train_model", timeout_s=60, drain_time_s=5, on_reset="rerun",
                           max_attempts=3)
    return states.queue(row.id, then=models.follow)


def model_status(execution: Execution) -> str:
    return Model.get_by_id(execution.model_id).status  # type: ignore[no-any-return]


def test_a_models_status_follows_its_training_in_the_same_change(training: Execution) -> None:
    assert model_status(training) == "pending"
    states.claim(training.id, 1, "a", then=models.follow)
    assert model_status(training) == "training"
    states.finish(training.id, 1, ExecutionStatus.SUCCESS, "done", then=models.follow, output={"model_path": "/m", "metrics": {"a": 1}})
    trained = Model.get_by_id(training.model_id)
    assert (trained.status, trained.artifact_path, trained.metrics) == ("trained", "/m", {"a": 1})
    assert Artifact.get(Artifact.execution == training.id).kind == "model"


def test_a_refused_change_leaves_the_model_as_it_was(training: Execution) -> None:
    instance = Instance.create(service=training.service_id, status="running")
    states.claim(training.id, 1, instance.id, then=models.follow)
    states.reset(training.id, 1, "instance lost", then=models.follow)
    assert model_status(training) == "pending"

    late = Finish(attempt=1, outcome=Outcome.FAILED, reason="a late result of the reset attempt")
    with pytest.raises(StaleAttempt):
        attempts.finish(redis.Redis(), load_settings(), instance, training.id, late)  # never reaches Redis: not a reset
    with pytest.raises(InvalidTransition):
        states.finish(training.id, 2, ExecutionStatus.FAILED, "not claimed yet", then=models.follow)
    assert model_status(training) == "pending"
    assert Execution.get_by_id(training.id).status == "rerun"


def test_a_model_change_that_fails_undoes_the_executions_change(training: Execution) -> None:
    def broken(execution: Execution) -> None:
        models.follow(execution)
        raise RuntimeError("the model's write failed")

    with pytest.raises(RuntimeError):
        states.claim(training.id, 1, "a", then=broken)
    assert Execution.get_by_id(training.id).status == "pending" and model_status(training) == "pending"
    assert log_of(training.id) == [("pending", 1)] and Attempt.select().count() == 0
