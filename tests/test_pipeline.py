"""The core pipeline end to end, on the real stack: HTTP -> DB -> queue -> instance -> work process.

Each test runs twice: SQLite + embedded Redis, and PostgreSQL + a Redis server (CI).
"""
from __future__ import annotations

import os
import re
import signal
from typing import Any

import psutil
import pytest
import redis

from tests.conftest import wait_until
from trainfaas.services.control.instances import replace_token
from trainfaas.services.sdk.client import ApiError
from trainfaas.services.store.records import Attempt, Execution, Instance

pytestmark = pytest.mark.stack


def sleep_model(stack: Any, **configuration: Any) -> dict[str, Any]:
    return stack.client.create_model("drill", "sleep", configuration=configuration)


def wait_status(stack: Any, execution_id: str, *statuses: str, timeout_s: float = 90.0) -> dict[str, Any]:
    return wait_until(lambda: (e := stack.client.get_execution(execution_id))["status"] in statuses and e,
                      timeout_s, f"execution {execution_id} to become {statuses}")


def wait_progress(stack: Any, execution_id: str, attempt: int, percent: float) -> dict[str, Any]:
    def reached() -> Any:
        e = stack.client.get_execution(execution_id)
        return e["status"] == "in-progress" and e["attempt"] == attempt and e["progress"] >= percent and e

    return wait_until(reached, 90, f"execution {execution_id} attempt {attempt} at {percent}%")


def instance_of(execution_id: str, attempt: int) -> Instance:
    return Instance.get_by_id(Attempt.get((Attempt.execution == execution_id) & (Attempt.number == attempt)).instance)


def work_process(instance: Instance, execution_id: str, attempt: int = 1) -> psutil.Process:
    """The work process running the attempt, as its instance reports it in its heartbeat."""
    def find() -> int | None:
        running = Instance.get_by_id(instance.id).running
        return next((e["pid"] for e in running if (e["execution_id"], e["attempt"]) == (execution_id, attempt)), None)

    process = psutil.Process(wait_until(find, 30, "the instance to report the work process"))
    assert instance.pid in [parent.pid for parent in process.parents()]
    return process


def test_a_training_enqueued_over_http_succeeds_with_its_status_log_metrics_and_artifacts(stack: Any) -> None:
    model = sleep_model(stack, seconds=1, steps=4)
    execution = stack.client.train(model["id"])
    assert execution["status"] == "pending" and execution["service"] == "mgmt-train-sleep"

    final = wait_status(stack, execution["id"], "success", "failed", "aborted")

    assert final["status"] == "success", final
    assert [row["status"] for row in final["status_log"]] == ["created", "pending", "in-progress", "success"]
    assert final["progress"] == 100 and final["attempt"] == 1 and final["duration_s"] > 0
    losses = [m for m in stack.client.metrics(execution["id"]) if m["figure"] == "loss"]
    assert [m["x"] for m in losses] == [1, 2, 3, 4]
    kinds = {a["kind"] for a in stack.client.artifacts(execution["id"])}
    assert kinds == {"checkpoint", "model"}
    trained = stack.client.get_model(model["id"])
    assert trained["status"] == "trained" and os.path.exists(trained["artifact_path"])


def test_a_killed_work_process_reruns_and_resumes_from_its_checkpoint(stack: Any) -> None:
    model = sleep_model(stack, seconds=4, steps=8)
    execution = stack.client.train(model["id"])
    wait_progress(stack, execution["id"], 1, 25)

    work_process(instance_of(execution["id"], 1), execution["id"]).send_signal(signal.SIGKILL)
    final = wait_status(stack, execution["id"], "success", "failed", "aborted")

    assert final["status"] == "success" and final["attempt"] == 2, final
    first = final["attempts"][0]
    assert first["outcome"] == "reset" and "SIGKILL" in first["reason"], first
    assert [row["status"] for row in final["status_log"]] == ["created", "pending", "in-progress", "rerun", "in-progress", "in-progress", "success"]
    # The status log says from which step the rerun resumes, and the adapter did resume there.
    step = next(int(re.search(r"at step (\d+)", row["message"]).group(1))  # type: ignore[union-attr]
                for row in final["status_log"] if "resuming from checkpoint" in row["message"])
    resumed = [line["line"] for line in stack.client.logs(execution["id"]) if line["attempt"] == 2]
    assert step >= 2 and any(line.startswith(f"resumed from step {step} ") for line in resumed), resumed


def test_a_killed_fork_server_resets_the_attempt_and_the_instance_serves_on(stack: Any) -> None:
    """An OOM kill or a kill of the process group takes the fork server, the resource tracker and
    the work process together: nobody saw how the work process ended, so it is a reset, not a
    failure of the training; the instance starts a new fork server and keeps serving."""
    model = sleep_model(stack, seconds=4, steps=8)
    execution = stack.client.train(model["id"])
    wait_progress(stack, execution["id"], 1, 25)
    instance = instance_of(execution["id"], 1)
    worker = work_process(instance, execution["id"])
    server = worker.parent()
    assert server is not None and "forkserver" in " ".join(server.cmdline()), server
    tracker = [child for child in psutil.Process(instance.pid).children() if "resource_tracker" in " ".join(child.cmdline())]

    for process in (server, *tracker, worker):
        process.send_signal(signal.SIGKILL)
    final = wait_status(stack, execution["id"], "success", "failed", "aborted")

    assert final["status"] == "success" and final["attempt"] == 2, (final["status"], final["error"], final["attempts"])
    assert final["attempts"][0]["outcome"] == "reset" and "fork server" in final["attempts"][0]["reason"], final["attempts"][0]
    later = stack.client.train(sleep_model(stack, seconds=0.2, steps=2)["id"])
    assert wait_status(stack, later["id"], "success", "failed", "aborted")["status"] == "success"
    assert instance_of(later["id"], 1).id == instance.id and Instance.get_by_id(instance.id).pid == instance.pid


def test_a_diverged_training_succeeds_with_null_figures_and_its_instance_serves_on(stack: Any) -> None:
    """Its loss is NaN in every sample, checkpoint and the final metrics: JSON has no NaN, so the
    samples are left out and the figures stored as null, and nothing keeps the instance waiting."""
    execution = stack.client.train(sleep_model(stack, seconds=0.4, steps=2, diverge=True)["id"])
    final = wait_status(stack, execution["id"], "success", "failed", "aborted")

    assert final["status"] == "success" and final["attempt"] == 1, final
    assert final["output"]["metrics"] == {"steps": 2.0, "loss": None}, final["output"]
    assert [m for m in stack.client.metrics(execution["id"]) if m["figure"] != "system"] == []  # usage samples stay
    instance = instance_of(execution["id"], 1)
    later = stack.client.train(sleep_model(stack, seconds=0.2, steps=2)["id"])
    assert wait_status(stack, later["id"], "success", "failed", "aborted")["status"] == "success"
    assert instance_of(later["id"], 1).id == instance.id
    assert Instance.get_by_id(instance.id).status in ("running", "full")


def test_a_fine_tune_starts_from_its_base_models_saved_weights_labels_and_configuration(stack: Any) -> None:
    base = stack.client.create_model("base", "sleep", labels=["a", "b"], configuration={"seconds": 0.2, "steps": 3})
    assert stack.client.wait(stack.client.train(base["id"])["id"], timeout_s=60)["status"] == "success"
    trained = stack.client.get_model(base["id"])

    tuned = stack.client.create_model("tuned", "sleep", from_model=base["id"], configuration={"steps": 2})
    assert tuned["base_model"] == base["id"] and tuned["labels"] == ["a", "b"]
    assert tuned["configuration"] == {"seconds": 0.2, "steps": 2}
    final = stack.client.wait(stack.client.train(tuned["id"])["id"], timeout_s=60)
    assert final["status"] == "success"
    lines = [line["line"] for line in stack.client.logs(final["id"])]
    assert f"fine-tuning from {trained['artifact_path']} trained for 3 steps" in lines, lines

    for body, field in (({"from_model": "nope"}, "from_model"), ({"from_model": tuned["id"], "architecture": "resnet18"}, "from_model")):
        with pytest.raises(ApiError) as refused:
            stack.client.request("POST", "/api/v1/models", json={"name": "x", "architecture": "sleep", **body})
        assert refused.value.status == 422 and field in refused.value.fields, refused.value


def test_a_killed_instance_reruns_its_execution_on_a_new_instance(stack: Any) -> None:
    model = sleep_model(stack, seconds=3, steps=6)
    execution = stack.client.train(model["id"])
    wait_progress(stack, execution["id"], 1, 15)
    first_instance = instance_of(execution["id"], 1)
    worker = work_process(first_instance, execution["id"])

    os.kill(first_instance.pid, signal.SIGKILL)
    final = wait_status(stack, execution["id"], "success", "failed", "aborted")

    assert final["status"] == "success" and final["attempt"] == 2, final
    first, second = final["attempts"]
    assert first["outcome"] == "reset" and first_instance.id in first["reason"] and "SIGKILL" in first["reason"], first
    assert second["instance"] != first_instance.id
    wait_until(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, 10, "the orphaned work process to die")


def test_a_killed_instance_takes_its_fork_server_and_a_silent_work_process_with_it(stack: Any) -> None:
    model = sleep_model(stack, seconds=600, steps=1)  # one step of 600 s: nothing goes over its pipe meanwhile
    execution = stack.client.train(model["id"])
    wait_status(stack, execution["id"], "in-progress")
    instance = instance_of(execution["id"], 1)
    worker = work_process(instance, execution["id"])
    server = worker.parent()
    assert server is not None and server.pid != instance.pid and server.ppid() == instance.pid  # the fork server

    os.kill(instance.pid, signal.SIGKILL)

    def gone(process: psutil.Process) -> bool:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    wait_until(lambda: gone(server) and gone(worker), 10, "the killed instance's fork server and work process to end")
    stack.client.terminate(execution["id"])
    wait_status(stack, execution["id"], "terminated", "aborted")


def test_with_on_reset_fail_a_killed_work_process_aborts_the_execution_with_the_reason(stack: Any) -> None:
    model = sleep_model(stack, seconds=4, steps=8)
    execution = stack.client.train(model["id"], execution={"on_reset": "fail"})
    wait_progress(stack, execution["id"], 1, 25)

    work_process(instance_of(execution["id"], 1), execution["id"]).send_signal(signal.SIGKILL)
    final = wait_status(stack, execution["id"], "aborted", "success", "failed")

    assert final["status"] == "aborted" and final["attempt"] == 1
    assert "SIGKILL" in final["error"] and "on_reset=fail" in final["error"]


def test_attempts_never_exceed_max_attempts(stack: Any) -> None:
    # Steps of 0.5 s, and each attempt is killed at its first progress report: an attempt lives on
    # until its instance's heartbeat (every 2 s) names its work process, and the rerun resumes where
    # the first attempt's last checkpoint left it, so neither may be near its end by then.
    model = sleep_model(stack, seconds=12, steps=24)
    execution = stack.client.train(model["id"], execution={"max_attempts": 2})
    for attempt in (1, 2):
        wait_progress(stack, execution["id"], attempt, 1)
        work_process(instance_of(execution["id"], attempt), execution["id"], attempt).send_signal(signal.SIGKILL)

    final = wait_status(stack, execution["id"], "aborted", "success", "failed")

    assert final["status"] == "aborted" and final["attempt"] == 2
    assert "attempts exhausted (2/2)" in final["error"]
    assert Attempt.select().where(Attempt.execution == execution["id"]).count() == 2


def test_a_timeout_resets_the_attempt_within_two_seconds_of_its_deadline(stack: Any) -> None:
    model = sleep_model(stack, seconds=60, steps=60)
    execution = stack.client.train(model["id"], execution={"timeout_s": 2, "on_reset": "fail"})

    final = wait_status(stack, execution["id"], "aborted", "success", "failed")

    assert final["status"] == "aborted" and "timeout" in final["error"]
    attempt = Attempt.get((Attempt.execution == execution["id"]) & (Attempt.number == 1))
    assert attempt.outcome == "reset" and "timeout" in attempt.reason
    assert attempt.ended_at - attempt.started_at <= 2 + 2


def test_terminate_stops_a_running_training_which_saves_a_checkpoint(stack: Any) -> None:
    model = sleep_model(stack, seconds=30, steps=30)
    execution = stack.client.train(model["id"])
    wait_progress(stack, execution["id"], 1, 5)

    assert stack.client.terminate(execution["id"])["stop_requested"] is True
    final = wait_status(stack, execution["id"], "terminated", "success", "failed", "aborted")

    assert final["status"] == "terminated" and final["attempt"] == 1
    assert final["output"]["metrics"]["stopped"] == 1.0
    checkpoints = [a for a in stack.client.artifacts(execution["id"]) if a["kind"] == "checkpoint"]
    assert checkpoints and checkpoints[-1]["step"] == final["output"]["metrics"]["steps"]
    with pytest.raises(ApiError) as ended:
        stack.client.terminate(execution["id"])
    assert ended.value.status == 409 and ended.value.fields == {"status": "terminated"}


def test_a_redis_flush_loses_nothing_the_reconciler_requeues_pending_executions(stack: Any) -> None:
    stack.client.update_service("mgmt-train-sleep", min_instances=0)
    models = [sleep_model(stack, seconds=0.2, steps=1) for _ in range(3)]  # a model trains once at a time
    ids = [stack.client.train(model["id"])["id"] for model in models]
    connection = redis.Redis.from_url(stack.settings.redis_url)
    assert connection.llen("rq:queue:mgmt-train-sleep") >= 3

    connection.flushdb()
    stack.client.update_service("mgmt-train-sleep", min_instances=1)

    for execution_id in ids:
        assert wait_status(stack, execution_id, "success", "failed", "aborted")["status"] == "success"


def test_an_adapter_exception_fails_the_execution_with_its_traceback_and_the_instance_keeps_serving(stack: Any) -> None:
    model = sleep_model(stack, seconds=0.4, steps=2, raise_error="the adapter broke")
    broken = stack.client.train(model["id"])
    failed = wait_status(stack, broken["id"], "failed", "success", "aborted")

    assert failed["status"] == "failed" and failed["attempt"] == 1
    assert failed["error"] == "RuntimeError: the adapter broke"
    assert "Traceback" in failed["traceback"] and "raise RuntimeError" in failed["traceback"]

    healthy = stack.client.train(model["id"], configuration={"raise_error": None})
    assert wait_status(stack, healthy["id"], "success", "failed", "aborted")["status"] == "success"
    assert instance_of(healthy["id"], 1).id == instance_of(broken["id"], 1).id


def test_a_stale_attempt_cannot_write_a_result_after_its_execution_was_rerun(stack: Any) -> None:
    model = sleep_model(stack, seconds=4, steps=8)
    execution = stack.client.train(model["id"])
    wait_progress(stack, execution["id"], 1, 25)
    old = instance_of(execution["id"], 1)
    work_process(old, execution["id"]).send_signal(signal.SIGKILL)
    wait_until(lambda: Execution.get_by_id(execution["id"]).attempt == 2, 30, "attempt 2")

    token = replace_token(old.id)
    response = stack.client.http.post(
        f"{stack.settings.api_url}/api/v1/instances/{old.id}/executions/{execution['id']}/finish",
        json={"attempt": 1, "outcome": "success", "output": {"metrics": {}}}, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 409 and response.json()["error"]["code"] == "stale_attempt"
    assert Execution.get_by_id(execution["id"]).attempt == 2


def test_a_draining_instance_resets_what_outlives_the_drain_time_and_the_rerun_resumes(stack: Any) -> None:
    model = sleep_model(stack, seconds=6, steps=12)
    execution = stack.client.train(model["id"], execution={"drain_time_s": 1})
    wait_progress(stack, execution["id"], 1, 10)
    draining = instance_of(execution["id"], 1)

    os.kill(draining.pid, signal.SIGTERM)
    final = wait_status(stack, execution["id"], "success", "failed", "aborted")

    assert final["status"] == "success" and final["attempt"] == 2, final
    first = final["attempts"][0]
    assert first["outcome"] == "reset" and "drain time exceeded" in first["reason"], first
    assert wait_until(lambda: Instance.get_by_id(draining.id).status == "exited", 30, "the drained instance to exit")
    assert any("resuming from checkpoint" in row["message"] for row in final["status_log"])
