"""run_as_process false on the real stack: executions of one project and function run one after
another in a work process that stays warm; a crash, a timeout or a stop ends that process, and the
next execution gets a fresh one. A training runs warm only where its service opted in.

Each test runs twice: SQLite + embedded Redis, and PostgreSQL + a Redis server (CI).
"""
from __future__ import annotations

from typing import Any

import psutil
import pytest

from tests.conftest import wait_until
from tests.test_pipeline import instance_of, sleep_model, wait_status, work_process
from trainfaas.services.sdk.client import ApiError

pytestmark = pytest.mark.stack

SLEEP = "mgmt-train-sleep"
WARM = {"run_as_process": False}
ENDED = ("success", "failed", "aborted", "terminated")


def noop(stack: Any, execution: dict[str, Any] | None = None, project: str | None = None) -> dict[str, Any]:
    """Run one noop to its end (one at a time: a warm process serves one attempt at a time)."""
    started = stack.client.enqueue(SLEEP, "noop", {}, execution=execution, project=project)
    final = wait_status(stack, started["id"], *ENDED)
    assert final["status"] == "success", final
    return final


def test_noops_run_in_one_warm_work_process_per_project_and_fresh_ones_as_processes(stack: Any) -> None:
    stack.client.update_service(SLEEP, concurrency=1)
    warm = [noop(stack, WARM) for _ in range(4)]

    pids = {final["output"]["pid"] for final in warm}
    assert len(pids) == 1, pids
    assert psutil.pid_exists(pids.pop()) and instance_of(warm[0]["id"], 1).id == instance_of(warm[-1]["id"], 1).id
    logs = [line["line"] for line in stack.client.logs(warm[-1]["id"])]
    assert any("warm work process" in line and "attempt 4 in it" in line for line in logs), logs
    fresh = [noop(stack)["output"]["pid"] for _ in range(2)]  # run_as_process true: a process each
    assert len(set(fresh)) == 2 and warm[0]["output"]["pid"] not in fresh
    stack.client.create_project("other")
    other = noop(stack, WARM, project="other")  # another project never shares a warm process
    assert other["output"]["pid"] != warm[0]["output"]["pid"]
    assert noop(stack, WARM)["output"]["pid"] == warm[0]["output"]["pid"]


def test_a_training_runs_warm_only_where_its_service_opted_in_and_a_crash_or_timeout_replaces_the_process(stack: Any) -> None:
    model = sleep_model(stack, seconds=0.2, steps=2)
    with pytest.raises(ApiError) as refused:
        stack.client.train(model["id"], execution=WARM)
    assert refused.value.status == 422 and "execution.run_as_process" in refused.value.fields, refused.value.fields
    trained = stack.client.train(model["id"])
    assert wait_status(stack, trained["id"], *ENDED)["status"] == "success"
    with pytest.raises(ApiError) as refused:  # nor can a rerun take a training there
        stack.client.rerun(trained["id"], execution=WARM)
    assert refused.value.status == 422 and "execution.run_as_process" in refused.value.fields, refused.value.fields

    stack.client.update_service(SLEEP, run_as_process=False, concurrency=1)  # the opt-in: trainings of this service run warm
    crash = stack.client.train(sleep_model(stack, seconds=0.2, steps=2, exit_code=3, fail_at=0)["id"])
    final = wait_status(stack, crash["id"], *ENDED)
    assert final["status"] == "failed" and "code 3" in final["error"], final
    first = stack.client.train(model["id"])  # the next one still runs, in a new process
    assert wait_status(stack, first["id"], *ENDED)["status"] == "success"

    slow = stack.client.train(sleep_model(stack, seconds=60, steps=60)["id"], execution={"timeout_s": 8, "on_reset": "fail"})
    wait_status(stack, slow["id"], "in-progress")  # its heartbeat names its process well before its timeout
    stuck = work_process(instance_of(slow["id"], 1), slow["id"])
    final = wait_status(stack, slow["id"], *ENDED)
    assert final["status"] == "aborted" and "timeout" in final["error"], final
    assert any("warm work process" in line["line"] for line in stack.client.logs(slow["id"]))
    wait_until(lambda: not stuck.is_running() or stuck.status() == psutil.STATUS_ZOMBIE, 30, "the timed-out warm process to end")
    after = stack.client.train(model["id"])
    assert wait_status(stack, after["id"], *ENDED)["status"] == "success"
