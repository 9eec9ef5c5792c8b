"""Checkpoints on the real stack (gunicorn API, scheduler, process instances; SQLite with the
embedded Redis, and PostgreSQL with a Redis server), through the CLI and the SDK: a training keeps
its newest checkpoints as files of their own, a rerun resumes from the file it asks for, a
checkpoint becomes a model a fine-tune starts from, and an execution is removed from training."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import wait_until
from tests.test_pipeline import wait_status
from trainfaas.services.cli.main import main


def cli_of(stack: Any) -> Any:
    env = {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url, "COLUMNS": "120"}

    def cli(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return cli


def logged(stack: Any, execution_id: str, words: str) -> str:
    return wait_until(lambda: next((row["line"] for row in stack.client.logs(execution_id) if words in row["line"]), None),
                      60, f"a log line of {execution_id} with {words!r}")


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local", "server"], indirect=True)
def test_checkpoints_are_kept_resumed_from_and_made_into_models_on_the_stack(stack: Any) -> None:
    cli = cli_of(stack)
    model = stack.client.create_model("ticks", "sleep", configuration={"seconds": 0.2, "steps": 5})
    execution = json.loads(cli("models", "train", model["id"], "--keep-checkpoints", "2", "--json"))
    done = wait_status(stack, execution["id"], "success")
    assert done["keep_checkpoints"] == 2
    listed = json.loads(cli("executions", "checkpoints", execution["id"][:8], "--json"))
    assert [(row["step"], row["is_last"]) for row in listed] == [(4, False), (5, True)]
    folder = Path(stack.settings.home) / "executions" / execution["id"] / "attempt-1" / "checkpoints"
    assert sorted(path.name for path in folder.iterdir() if not path.name.startswith(".")) == [
        "step-000000000004.json", "step-000000000005.json"]
    table = cli("executions", "checkpoints", execution["id"])
    assert listed[0]["id"][:8] in table and "last" in table

    made = json.loads(cli("checkpoints", "model", listed[0]["id"][:8], "--name", "at-four", "--json"))
    assert (made["status"], made["source_step"], made["source_execution"]) == ("trained", 4, execution["id"])
    tuned = stack.client.create_model("tuned", "sleep", configuration={"seconds": 0.1, "steps": 2}, from_model=made["id"])
    tuning = stack.client.train(tuned["id"])
    wait_status(stack, tuning["id"], "success")
    assert "trained for 4 steps" in logged(stack, tuning["id"], "fine-tuning from")

    assert "removed from training" in cli("executions", "remove", tuning["id"])
    assert tuning["id"] not in {row["id"] for row in stack.client.list_executions()}
    assert tuning["id"] in {row["id"] for row in stack.client.list_executions(include_removed="true")}
    assert tuning["id"][:8] in cli("executions", "list", "--include-removed")

    stack.client.rerun(execution["id"], resume="last", configuration={"steps": 6})
    wait_status(stack, execution["id"], "success")
    assert logged(stack, execution["id"], "resumed from step").endswith(str(folder / "step-000000000005.json"))
    kept = stack.client.checkpoints(execution["id"])
    assert [(row["attempt"], row["step"]) for row in kept] == [(1, 5), (2, 6)]
    assert "deleted" in cli("checkpoints", "delete", kept[0]["id"], "--yes")
    assert not (folder / "step-000000000005.json").exists() and len(stack.client.checkpoints(execution["id"])) == 1
    stack.client.delete_model(model["id"])  # with its training and the training's files
    assert not folder.exists() and stack.client.get_model(made["id"])["status"] == "trained"
    assert (Path(made["artifact_path"]) / "model.json").exists()
