"""The autoscaler on the real stack with the process backend: grow, shrink, drain, back off."""
from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.conftest import wait_until
from trainfaas.services.core.statuses import LIVE_INSTANCE
from trainfaas.services.local.stack import Stack
from trainfaas.services.store.records import Instance, ServiceEvent

pytestmark = pytest.mark.stack

SERVICE = "mgmt-train-sleep"


def live_instances() -> int:
    return Instance.select().where((Instance.service == SERVICE) & (Instance.status.in_(LIVE_INSTANCE))).count()


def final_status(client: Any, execution_id: str) -> dict[str, Any]:
    return wait_until(lambda: (e := client.get_execution(execution_id))["status"] in ("success", "failed", "aborted", "terminated") and e,
                      120, f"execution {execution_id} to end")


def test_a_service_grows_to_max_for_its_queue_and_shrinks_to_zero_after_the_cooldown(stack: Any) -> None:
    stack.client.update_service(SERVICE, scaling_type="autoscale", min_instances=0, max_instances=3, queue_length=1,
                                polling_interval_s=1, cooldown_s=3)
    models = [stack.client.create_model(f"burst{n}", "sleep", configuration={"seconds": 2, "steps": 2}) for n in range(6)]
    ids = [stack.client.train(model["id"])["id"] for model in models]

    wait_until(lambda: live_instances() == 3, 60, "three instances")
    finals = [final_status(stack.client, execution_id) for execution_id in ids]
    assert [e["status"] for e in finals] == ["success"] * 6
    assert all(e["attempt"] == 1 for e in finals)

    wait_until(lambda: live_instances() == 0, 60, "the service to shrink to zero")
    events = list(stack.client.iter_pages(f"/api/v1/services/{SERVICE}/events", limit=500))
    actions = [e["action"] for e in reversed(events)]
    assert "scale-up" in actions and actions[-1] == "scale-down" and events[0]["desired"] == 0
    assert max(e["desired"] for e in events) == 3
    assert Instance.select().where((Instance.service == SERVICE) & (Instance.status == "failed")).count() == 0


def test_lowering_max_while_busy_drains_an_instance_instead_of_killing_its_execution(stack: Any) -> None:
    stack.client.update_service(SERVICE, scaling_type="autoscale", min_instances=0, max_instances=2, polling_interval_s=1, cooldown_s=60)
    models = [stack.client.create_model(f"long{n}", "sleep", configuration={"seconds": 5, "steps": 10}) for n in range(2)]
    ids = [stack.client.train(model["id"])["id"] for model in models]
    wait_until(lambda: all(stack.client.get_execution(i)["status"] == "in-progress" for i in ids), 60, "both executions to run")

    stack.client.update_service(SERVICE, max_instances=1)
    wait_until(lambda: Instance.select().where((Instance.service == SERVICE) & (Instance.status == "terminating")).count() == 1,
               30, "one instance to drain")

    finals = [final_status(stack.client, execution_id) for execution_id in ids]
    assert [(e["status"], e["attempt"]) for e in finals] == [("success", 1), ("success", 1)]
    drained = wait_until(lambda: Instance.get_or_none((Instance.service == SERVICE) & (Instance.status == "exited")), 30, "the drained instance to exit")
    assert drained.last_exit_reason == "drained"
    assert ServiceEvent.select().where((ServiceEvent.service == SERVICE) & (ServiceEvent.reason.contains("max_instances lowered"))).exists()


def test_a_crash_looping_instance_marks_the_service_error_backs_off_and_loses_no_execution(stack_settings: Any) -> None:
    broken = stack_settings.model_copy(update={"process_command": f"{sys.executable} -c 'raise SystemExit(3)'"})
    stack = Stack(broken).start()
    try:
        from trainfaas.services.sdk.client import Client

        client = Client.from_settings(broken)
        client.update_service(SERVICE, polling_interval_s=1)
        model = client.create_model("patient", "sleep", configuration={"seconds": 0.2, "steps": 1})
        execution = client.train(model["id"])

        service = wait_until(lambda: (s := client.get_service(SERVICE))["health"] == "error" and s, 60, "the service to show error")
        assert "crash loop" in service["health_reason"] and "exit code 3" in service["health_reason"]
        failures = Instance.select().where((Instance.service == SERVICE) & (Instance.status == "failed")).count()
        assert failures >= 3
        assert client.get_execution(execution["id"])["status"] == "pending"
        assert ServiceEvent.select().where((ServiceEvent.service == SERVICE) & (ServiceEvent.action == "backoff")).exists()

        # The operator fixes the instance command and restarts the scheduler.
        stack.scheduler.shutdown(5.0)
        stack.settings = stack_settings
        stack.start_scheduler()
        assert final_status(client, execution["id"])["status"] == "success"
        wait_until(lambda: client.get_service(SERVICE)["health"] == "ok", 60, "the service to recover")
    finally:
        stack.stop(drain_timeout_s=5.0)



def test_a_paused_service_starts_nothing_keeps_its_queue_and_resumes_it(stack: Any) -> None:
    stack.client.update_service(SERVICE, polling_interval_s=1)
    model = stack.client.create_model("held", "sleep", configuration={"seconds": 0.2, "steps": 1})
    warm = stack.client.train(model["id"])
    assert final_status(stack.client, warm["id"])["status"] == "success"

    stack.client.pause_service(SERVICE)
    other = stack.client.create_model("held2", "sleep", configuration={"seconds": 0.2, "steps": 1})
    ids = [stack.client.train(held["id"])["id"] for held in (model, other)]  # a model trains once at a time
    wait_until(lambda: live_instances() == 0, 30, "the instances to drain away")
    service = stack.client.get_service(SERVICE)
    assert service["health"] == "warning" and "paused" in service["health_reason"]
    assert [stack.client.get_execution(i)["status"] for i in ids] == ["pending", "pending"]
    assert any(e["action"] == "pause" for e in stack.client.service_events(SERVICE))

    stack.client.resume_service(SERVICE)
    assert [final_status(stack.client, i)["status"] for i in ids] == ["success", "success"]
    assert stack.client.get_service(SERVICE)["health"] == "ok"


def test_a_restarted_scheduler_adopts_the_process_instances_it_finds(stack: Any) -> None:
    from trainfaas.scheduler.backends.process import ProcessBackend
    from trainfaas.scheduler.daemon import Scheduler

    model = stack.client.create_model("adopted", "sleep", configuration={"seconds": 0.2, "steps": 1})
    first = stack.client.train(model["id"])
    assert final_status(stack.client, first["id"])["status"] == "success"
    (instance,) = Instance.select().where((Instance.service == SERVICE) & (Instance.status.in_(LIVE_INSTANCE)))

    # The scheduler dies without stopping anything (its instances run in their own sessions).
    old = stack.scheduler
    old.apscheduler.shutdown(wait=True)
    old.deliverer.stop()  # its threads die with it: none may outlive the test and reach later stacks
    old.stopping.set()  # its doorbell thread too
    old.lock.release()
    stack.scheduler = Scheduler(stack.settings, ProcessBackend(stack.settings))
    stack.scheduler.start()

    second = stack.client.train(model["id"])
    assert final_status(stack.client, second["id"])["status"] == "success"
    assert stack.client.get_execution(second["id"])["attempts"][0]["instance"] == instance.id
    assert Instance.select().where(Instance.service == SERVICE).count() == 1
    # And the new scheduler stops the adopted instance when it shuts down (the stack's teardown).
