"""Reruns with changes: options and settings changed for the next attempt, the checkpoint it
resumes from chosen (last, best, none), and "train longer from the best checkpoint at a lower
rate" as one command on the real stack."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.adapter_support import first_images
from tests.test_pipeline import wait_status
from trainfaas.adapters.datasets import write_digits
from trainfaas.services.cli.main import main
from trainfaas.services.control.attempts import last_checkpoint
from trainfaas.services.store.records import Artifact, Attempt, Execution, StatusLog


@pytest.fixture
def ended(api: Any) -> dict[str, Any]:
    """A sleep training stopped before it ran: an ended execution to rerun."""
    assert api.client.patch("/api/v1/services/mgmt-train-sleep", json={"min_instances": 0}).status_code == 200
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep", "configuration": {"steps": 10}}).get_json()
    execution = api.client.post(f"/api/v1/models/{model['id']}/train", json={}).get_json()
    assert api.client.post(f"/api/v1/executions/{execution['id']}/terminate").get_json()["status"] == "terminated"
    return execution


def test_a_rerun_changes_options_settings_and_where_it_resumes_and_says_so(api: Any, ended: dict[str, Any]) -> None:
    body = {"configuration": {"steps": 5}, "execution": {"timeout_s": 100, "max_attempts": 4}, "resume": "none"}
    response = api.client.post(f"/api/v1/executions/{ended['id']}/rerun", json=body)
    assert response.status_code == 202, response.get_json()
    row = Execution.get_by_id(ended["id"])
    assert (row.status, row.attempt, row.max_attempts, row.timeout_s, row.resume_from) == ("rerun", 2, 4, 100, "none")
    assert row.input["configuration"]["steps"] == 5 and row.input["configuration"]["seconds"] == 5.0
    note = StatusLog.select().where(StatusLog.execution == row.id).order_by(StatusLog.id.desc()).first().message
    assert "steps 10 -> 5" in note and "timeout_s" in note and "resume from none" in note
    assert api.client.post(f"/api/v1/executions/{ended['id']}/terminate").status_code == 202
    plain = api.client.post(f"/api/v1/executions/{ended['id']}/rerun")  # no body: a plain rerun
    assert plain.status_code == 202 and Execution.get_by_id(ended["id"]).resume_from is None


@pytest.mark.parametrize("body, field", [
    ({"configuration": {"steps": 0}}, "configuration.steps"),
    ({"execution": {"timeout_s": 10 ** 9}}, "execution.timeout_s"),
    ({"execution": {"max_attempts": 11}}, "execution.max_attempts"),
    ({"resume": "first"}, "resume"),
    ({"instance": "x"}, "instance"),
])
def test_a_bad_rerun_is_refused_naming_the_field_and_changes_nothing(api: Any, ended: dict[str, Any], body: dict[str, Any],
                                                                     field: str) -> None:
    response = api.client.post(f"/api/v1/executions/{ended['id']}/rerun", json=body)
    assert response.status_code == 422 and field in response.get_json()["error"]["fields"], response.get_json()
    row = Execution.get_by_id(ended["id"])
    assert (row.status, row.attempt, row.input["configuration"]["steps"]) == ("terminated", 1, 10)


def test_the_checkpoint_a_rerun_resumes_from_is_the_one_asked_for(api: Any, ended: dict[str, Any], tmp_path: Path) -> None:
    execution_id = ended["id"]
    Attempt.create(execution=execution_id, number=1, instance="i", outcome="success", reason="")
    for name, step in (("best.pt", 6), ("last.pt", 10)):
        (tmp_path / name).write_bytes(b"x")
        Artifact.create(execution=execution_id, attempt=1, kind="checkpoint", path=str(tmp_path / name), step=step,
                        is_best=name == "best.pt")
    assert last_checkpoint(execution_id, 2) is None  # after a success: anew
    assert last_checkpoint(execution_id, 2, "none") is None
    assert last_checkpoint(execution_id, 2, "last").step == 10
    assert last_checkpoint(execution_id, 2, "best").step == 6
    (tmp_path / "best.pt").unlink()
    assert last_checkpoint(execution_id, 2, "best") is None  # a file that is gone is not resumed
    (tmp_path / "best.pt").write_bytes(b"x")
    (tmp_path / "last.pt").unlink()  # rotated away by a trainer that died before it reported the newer one
    assert last_checkpoint(execution_id, 2, "last").step == 6  # the newest still there


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_train_longer_from_the_best_checkpoint_at_a_lower_rate_is_one_command(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    digits = Path(write_digits(tmp_path_factory.mktemp("sample") / "digits")["path"])
    data = first_images(digits, tmp_path_factory.mktemp("small") / "digits")
    options = {"epochs": 2, "batch_size": 16, "input_size": 16, "warmup_steps": 0}
    model = stack.client.create_model("digits", "resnet18", configuration=options)
    first = wait_status(stack, stack.client.train(model["id"], str(data))["id"], "success", timeout_s=240)
    assert first["output"]["metrics"]["steps"] == 10

    [best_kept] = [row for row in stack.client.checkpoints(first["id"]) if row["is_best"]]
    env = {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url}
    result = CliRunner().invoke(main, ["executions", "rerun", first["id"], "--resume", "best", "-c", "epochs=4",
                                       "-c", "learning_rate=0.002"], env=env, catch_exceptions=False)
    assert result.exit_code == 0 and "as attempt 2" in result.output, result.output
    second = wait_status(stack, first["id"], "success", timeout_s=240)
    assert second["attempt"] == 2 and second["output"]["metrics"]["steps"] == 20
    assert second["input"]["configuration"]["learning_rate"] == 0.002
    best = json.dumps(second["status_log"])
    assert f"resuming from checkpoint at step {best_kept['step']} of attempt 1" in best, best
    assert f"/checkpoints/step-{best_kept['step']:012d}.pt" in best, best
    rates = [m["y"] for m in stack.client.metrics(first["id"]) if m["figure"] == "learning_rate" and m["attempt"] == 2]
    assert rates and max(rates) <= 0.002
