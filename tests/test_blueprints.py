"""Blueprints (named training configurations of a project) and the configuration of an execution:
through the API on SQLite and PostgreSQL, and through the CLI on the real stack."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.test_api_access import project_tokens
from trainfaas.services.cli.main import main
from trainfaas.services.store.records import Blueprint, Execution, Model

SLEEP_CONFIG = {"architecture": "sleep", "configuration": {"seconds": 0.1, "steps": 3}, "execution": {"max_attempts": 2}}


def save(client: Any, name: str, **body: Any) -> Any:
    return client.post("/api/v1/blueprints", json={"name": name, **body})


def test_a_blueprint_is_saved_once_per_name_listed_after_the_built_ins_and_replaced_on_request(api: Any) -> None:
    saved = save(api.client, "short", config=SLEEP_CONFIG, description="a short drill")
    assert saved.status_code == 201, saved.get_json()
    body = saved.get_json()
    assert body["configuration"] == {"seconds": 0.1, "steps": 3} and body["execution"] == {"max_attempts": 2}
    assert body["project"] == "default" and body["built_in"] is False
    again = save(api.client, "short", config=SLEEP_CONFIG)
    assert again.status_code == 409 and "name" in again.get_json()["error"]["fields"]
    replaced = save(api.client, "short", config={**SLEEP_CONFIG, "configuration": {"steps": 9}}, replace=True)
    assert replaced.status_code == 201 and replaced.get_json()["configuration"] == {"steps": 9}
    listed = api.client.get("/api/v1/blueprints").get_json()["items"]
    assert [(b["name"], b["built_in"]) for b in listed] == [("quick", True), ("full", True), ("short", False)]
    assert Blueprint.select().count() == 1


@pytest.mark.parametrize("body, field", [
    ({"name": "quick", "config": SLEEP_CONFIG}, "name"),
    ({"name": "Bad Name", "config": SLEEP_CONFIG}, "name"),
    ({"name": "x", "config": {**SLEEP_CONFIG, "configuration": {"secs": 1}}}, "configuration.secs"),
    ({"name": "x", "config": {**SLEEP_CONFIG, "architecture": "resnet9000"}}, "architecture"),
    ({"name": "x", "config": {**SLEEP_CONFIG, "execution": {"max_attempts": 0}}}, "config.execution.max_attempts"),
    ({"name": "x"}, "from_execution"),
])
def test_a_bad_blueprint_is_refused_naming_the_field_and_nothing_is_saved(api: Any, body: dict[str, Any], field: str) -> None:
    response = api.client.post("/api/v1/blueprints", json=body)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]
    assert Blueprint.select().count() == 0


def test_the_full_blueprint_describes_every_option_and_needs_an_architecture(api: Any) -> None:
    full = api.client.get("/api/v1/blueprints/full", query_string={"architecture": "resnet18"}).get_json()
    options = {option["name"]: option for option in full["options"]}
    assert set(options) == set(full["configuration"]) and len(options) > 20
    assert options["epochs"]["default"] == full["configuration"]["epochs"] and options["epochs"]["minimum"] == 1
    assert options["optimizer"]["description"] and all(option["description"] for option in full["options"])
    missing = api.client.get("/api/v1/blueprints/full")
    assert missing.status_code == 422 and "architecture" in missing.get_json()["error"]["fields"]
    assert api.client.get("/api/v1/blueprints/quick").get_json()["configuration"] == {}
    assert api.client.delete("/api/v1/blueprints/full").status_code == 422


def test_a_training_takes_the_blueprint_under_what_its_request_says(api: Any) -> None:
    assert save(api.client, "short", config=SLEEP_CONFIG).status_code == 201
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    queued = api.client.post(f"/api/v1/models/{model['id']}/train", json={"blueprint": "short", "configuration": {"steps": 5}})
    assert queued.status_code == 202, queued.get_json()
    execution = Execution.get_by_id(queued.get_json()["id"])
    assert execution.input["configuration"]["seconds"] == 0.1 and execution.input["configuration"]["steps"] == 5
    assert execution.max_attempts == 2

    other = api.client.post("/api/v1/models", json={"name": "r", "architecture": "resnet18"}).get_json()
    refused = api.client.post(f"/api/v1/models/{other['id']}/train", json={"blueprint": "short"})
    assert refused.status_code == 422 and "blueprint" in refused.get_json()["error"]["fields"]
    unknown = api.client.post(f"/api/v1/models/{other['id']}/train", json={"blueprint": "nope"})
    assert unknown.status_code == 404 and Execution.select().count() == 1


def test_an_executions_config_is_saved_as_a_blueprint_that_records_its_source(api: Any) -> None:
    model = api.client.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    execution = api.client.post(f"/api/v1/models/{model['id']}/train", json={"configuration": {"seconds": 0.3}}).get_json()
    config = api.client.get(f"/api/v1/executions/{execution['id'][:8]}/config").get_json()
    assert config["architecture"] == "sleep" and config["configuration"]["seconds"] == 0.3
    assert set(config["execution"]) == {"timeout_s", "drain_time_s", "on_reset", "max_attempts"}
    saved = save(api.client, "from-run", from_execution=execution["id"][:8]).get_json()
    assert saved["source_execution"] == execution["id"]
    assert {k: saved[k] for k in config} == config
    noop = api.client.post("/api/v1/services/mgmt-train-sleep/executions", json={"function": "noop", "input": {}}).get_json()
    refused = api.client.get(f"/api/v1/executions/{noop['id']}/config")
    assert refused.status_code == 422 and "execution_id" in refused.get_json()["error"]["fields"]


def test_another_projects_blueprints_cannot_be_read_used_or_deleted(api: Any) -> None:
    tokens = {name: project_tokens(api, name) for name in ("a", "b")}
    writer_a, writer_b = api.as_(tokens["a"]["write"]), api.as_(tokens["b"]["write"])
    assert save(writer_a, "mine", config=SLEEP_CONFIG).status_code == 201
    assert writer_b.get("/api/v1/blueprints/mine").status_code == 404
    assert writer_b.get("/api/v1/blueprints/mine", query_string={"project": "a"}).status_code == 404
    assert writer_b.delete("/api/v1/blueprints/mine", query_string={"project": "a"}).status_code == 404
    model_b = writer_b.post("/api/v1/models", json={"name": "m", "architecture": "sleep"}).get_json()
    assert writer_b.post(f"/api/v1/models/{model_b['id']}/train", json={"blueprint": "mine"}).status_code == 404
    assert [b["name"] for b in writer_b.get("/api/v1/blueprints").get_json()["items"]] == ["quick", "full"]
    assert api.as_(tokens["a"]["read"]).delete("/api/v1/blueprints/mine").status_code == 403
    assert writer_a.delete("/api/v1/blueprints/mine").status_code == 200 and Blueprint.select().count() == 0


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_the_cli_copies_a_config_trains_from_it_and_from_a_saved_blueprint(stack: Any, tmp_path: Path) -> None:
    env = {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url, "COLUMNS": "100"}

    def cli(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    first = json.loads(cli("train", "-a", "sleep", "-c", "seconds=0.1", "-c", "steps=2", "--max-attempts", "2", "--json"))
    copied = tmp_path / "config.json"
    copied.write_text(cli("executions", "config", first["id"]))
    second = json.loads(cli("train", "--config-file", str(copied), "--json"))
    assert stack.client.execution_config(second["id"]) == json.loads(copied.read_text())

    assert "saved" in cli("blueprints", "save", "drill", "--from-execution", first["id"], "--description", "two steps")
    third = json.loads(cli("train", "--blueprint", "drill", "-c", "steps=4", "--json"))
    expected = json.loads(copied.read_text())
    expected["configuration"]["steps"] = 4
    assert stack.client.execution_config(third["id"]) == expected
    listed = cli("blueprints", "list")
    assert "drill" in listed and "quick" in listed and "two steps" in listed
    options = cli("blueprints", "show", "full", "-a", "resnet18")
    assert "learning_rate" in options and "epochs" in options
    assert "deleted" in cli("blueprints", "delete", "drill")
    assert Model.select().count() == 3


def test_a_project_saves_a_bounded_number_of_blueprints(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainfaas.services.control import blueprints

    monkeypatch.setattr(blueprints, "MAX_BLUEPRINTS", 2)
    assert [save(api.client, name, config=SLEEP_CONFIG).status_code for name in ("a", "b")] == [201, 201]
    full = save(api.client, "c", config=SLEEP_CONFIG)
    assert full.status_code == 429 and "at most 2" in full.get_json()["error"]["fields"]["name"]
    assert save(api.client, "a", config=SLEEP_CONFIG, replace=True).status_code == 201  # replacing takes no room
    assert Blueprint.select().count() == 2
