"""Clones: a new model like another (architecture, labels, options, data set) without its weights,
with the changes asked for, recording what it was cloned from; through the API on SQLite and
PostgreSQL, and the CLI on the real stack."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.generated_images import write_shapes
from tests.test_api_access import project_tokens
from tests.test_pipeline import wait_status
from trainfaas.services.cli.main import main
from trainfaas.services.store.records import Execution, Model


@pytest.fixture
def trained_once(api: Any) -> dict[str, Any]:
    """A resnet18 model with labels and options whose training on a generated data set is queued."""
    write_shapes(Path(api.settings.home) / "data" / "shapes", classes=2, side=24, train=3, validation=1)
    model = api.client.post("/api/v1/models", json={"name": "src", "architecture": "resnet18", "labels": ["circle", "square"],
                                                    "configuration": {"epochs": 3, "learning_rate": 0.05}}).get_json()
    queued = api.client.post(f"/api/v1/models/{model['id']}/train", json={"dataset": "shapes"})
    assert queued.status_code == 202, queued.get_json()
    return model


def test_a_clone_copies_the_model_without_weights_and_trains_on_its_data_set(api: Any, trained_once: dict[str, Any]) -> None:
    source = trained_once
    response = api.client.post(f"/api/v1/models/{source['id'][:8]}/clone", json={"configuration": {"learning_rate": 0.01}})
    assert response.status_code == 201, response.get_json()
    clone = response.get_json()
    assert (clone["architecture"], clone["labels"], clone["status"]) == ("resnet18", ["circle", "square"], "created")
    assert clone["configuration"] == {"epochs": 3, "learning_rate": 0.01} and clone["artifact_path"] is None
    assert clone["cloned_from"] == source["id"] and clone["name"] == "src-clone" and clone["project"] == "default"
    assert clone["dataset"] == str((Path(api.settings.home) / "data" / "shapes").resolve())
    assert Model.get_by_id(source["id"]).configuration == {"epochs": 3, "learning_rate": 0.05}  # the source is untouched

    training = api.client.post(f"/api/v1/models/{clone['id']}/train", json={})
    assert training.status_code == 202, training.get_json()
    assert Execution.get_by_id(training.get_json()["id"]).input["dataset"] == clone["dataset"]


@pytest.mark.parametrize("body, field", [
    ({"configuration": {"epochs": 0}}, "configuration.epochs"),
    ({"dataset": "../elsewhere"}, "dataset"),
    ({"name": ""}, "name"),
    ({"weights": "x"}, "weights"),
])
def test_a_bad_clone_is_refused_naming_the_field_and_nothing_is_made(api: Any, trained_once: dict[str, Any], body: dict[str, Any],
                                                                     field: str) -> None:
    response = api.client.post(f"/api/v1/models/{trained_once['id']}/clone", json=body)
    assert response.status_code == 422 and field in response.get_json()["error"]["fields"], response.get_json()
    assert Model.select().count() == 1


def test_another_projects_model_cannot_be_cloned(api: Any, trained_once: dict[str, Any]) -> None:
    writer = api.as_(project_tokens(api, "other")["write"])
    assert writer.post(f"/api/v1/models/{trained_once['id']}/clone", json={}).status_code == 404
    reader = api.as_(project_tokens(api, "third")["read"])
    assert reader.post(f"/api/v1/models/{trained_once['id']}/clone", json={}).status_code == 403
    assert Model.select().count() == 1


@pytest.mark.stack
@pytest.mark.parametrize("stack_settings", ["local"], indirect=True)
def test_the_cli_clones_a_model_and_trains_the_clone(stack: Any) -> None:
    env = {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url, "COLUMNS": "100"}

    def cli(*args: str) -> Any:
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    source = stack.client.create_model("drill", "sleep", configuration={"seconds": 0.1, "steps": 2})
    clone = json.loads(cli("models", "clone", source["id"], "--name", "longer", "-c", "steps=3", "--json"))
    assert clone["cloned_from"] == source["id"] and clone["configuration"] == {"seconds": 0.1, "steps": 3}
    execution = json.loads(cli("models", "train", clone["id"][:12], "--max-attempts", "2", "--json"))
    done = wait_status(stack, execution["id"], "success")
    assert done["max_attempts"] == 2 and done["input"]["configuration"]["steps"] == 3
    assert "cloned from" in cli("models", "clone", source["id"])


def test_a_clone_of_a_model_with_the_longest_name_keeps_to_the_limit(api: Any) -> None:
    source = api.client.post("/api/v1/models", json={"name": "n" * 200, "architecture": "sleep"}).get_json()
    clone = api.client.post(f"/api/v1/models/{source['id']}/clone", json={})
    assert clone.status_code == 201 and clone.get_json()["name"] == "n" * 194 + "-clone"
