"""The execution state machine on SQLite and PostgreSQL: legal moves, compare-and-set, fencing."""
from __future__ import annotations

import threading

import pytest
from trainfaas.services.control import transitions as states
from trainfaas.services.core.errors import InvalidTransition, StaleAttempt
from trainfaas.services.store.records import Attempt, Execution, Service, StatusLog


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
