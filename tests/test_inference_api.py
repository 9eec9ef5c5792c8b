"""Evaluate and predict requests at the API's edge: only a trained model of a reachable project
runs, and every data set, file and inline payload is checked before anything is queued."""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from trainfaas.adapters.datasets import write_digits
from trainfaas.services.control.models import set_status
from trainfaas.services.core.inputs import MAX_INLINE_IMAGE_CHARS, MAX_INPUTS
from trainfaas.services.core.statuses import ModelStatus
from trainfaas.services.store.records import Execution, Model

DIGITS = [str(digit) for digit in range(10)]


def png(width: int = 8, height: int = 8, mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def data(api: Any) -> Path:
    root = Path(api.settings.dataset_roots[0])
    write_digits(root / "digits")
    return root


@pytest.fixture
def model(api: Any, data: Path) -> dict[str, Any]:
    """A resnet18 model marked trained (its weights are never read: nothing here runs it)."""
    created = api.client.post("/api/v1/models", json={"name": "m", "architecture": "resnet18", "labels": DIGITS}).get_json()
    (data / "weights").mkdir()
    set_status(created["id"], ModelStatus.TRAINED, artifact_path=str(data / "weights"))
    return created  # type: ignore[no-any-return]


def refused(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    if field is not None:
        assert field in error["fields"], error
    return error  # type: ignore[no-any-return]


def test_an_evaluation_is_an_execution_of_the_model_that_leaves_it_trained(api: Any, model: dict[str, Any], data: Path) -> None:
    response = api.client.post(f"/api/v1/models/{model['id']}/evaluate", json={"dataset": "digits", "subset": "train"})
    assert response.status_code == 202, response.get_json()
    execution = response.get_json()
    assert (execution["function"], execution["model_id"], execution["service"]) == ("evaluate_model", model["id"], "mgmt-train-resnet18")
    assert execution["input"]["dataset"] == str((data / "digits").resolve()) and execution["input"]["subset"] == "train"
    assert Model.get_by_id(model["id"]).status == ModelStatus.TRAINED


def test_a_prediction_is_an_execution_of_the_model_with_its_checked_inputs(api: Any, model: dict[str, Any], data: Path) -> None:
    image = next((data / "digits" / "validation" / "3").iterdir())
    inputs = [{"file": str(image.relative_to(data))}, {"image": png()}]
    response = api.client.post(f"/api/v1/models/{model['id']}/predict", json={"inputs": inputs, "top_k": 2})
    assert response.status_code == 202, response.get_json()
    execution = response.get_json()
    assert (execution["function"], execution["model_id"]) == ("predict_model", model["id"])
    assert execution["input"]["inputs"][0] == {"file": str(image.resolve()), "name": inputs[0]["file"]}
    assert execution["input"]["top_k"] == 2
    assert Model.get_by_id(model["id"]).status == ModelStatus.TRAINED


def test_an_untrained_model_is_a_409_naming_its_status_and_nothing_is_queued(api: Any, data: Path) -> None:
    created = api.client.post("/api/v1/models", json={"name": "m", "architecture": "resnet18"}).get_json()
    error = refused(api.client.post(f"/api/v1/models/{created['id']}/evaluate", json={"dataset": "digits"}), 409)
    assert "created" in error["message"] and error["fields"]["status"] == "created"
    refused(api.client.post(f"/api/v1/models/{created['id']}/predict", json={"inputs": [{"image": png()}]}), 409)
    assert Execution.select().count() == 0


def test_another_projects_model_is_not_found(api: Any, model: dict[str, Any]) -> None:
    api.client.post("/api/v1/projects", json={"name": "team"})
    secret = api.client.post("/api/v1/tokens", json={"scope": "write", "project": "team"}).get_json()["token"]
    other = api.as_(secret)
    refused(other.post(f"/api/v1/models/{model['id']}/evaluate", json={"dataset": "digits"}), 404)
    refused(other.post(f"/api/v1/models/{model['id']}/predict", json={"inputs": [{"image": png()}]}), 404)
    assert Execution.select().count() == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"dataset": "../../etc"}, "dataset"),
    ({"dataset": "/etc"}, "dataset"),
    ({"dataset": "weights"}, "dataset"),  # not an image folder
    ({"dataset": "digits", "subset": "test"}, "subset"),
    ({"dataset": "digits", "execution": {"timeout_s": -1}}, "execution.timeout_s"),
])
def test_a_bad_evaluation_is_a_422_naming_the_field_and_leaves_no_trace(api: Any, model: dict[str, Any], body: dict[str, Any],
                                                                         field: str) -> None:
    refused(api.client.post(f"/api/v1/models/{model['id']}/evaluate", json=body), 422, field)
    assert Execution.select().count() == 0


def test_a_data_set_with_labels_the_model_lacks_is_refused(api: Any, data: Path) -> None:
    created = api.client.post("/api/v1/models", json={"name": "m", "architecture": "resnet18", "labels": ["0", "1"]}).get_json()
    set_status(created["id"], ModelStatus.TRAINED, artifact_path=str(data))
    error = refused(api.client.post(f"/api/v1/models/{created['id']}/evaluate", json={"dataset": "digits"}), 422, "dataset")
    assert "does not know" in error["message"]


def test_hostile_prediction_inputs_are_422s_naming_the_input_and_the_limit(api: Any, model: dict[str, Any], data: Path,
                                                                           tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    outside.write_bytes(base64.b64decode(png()))
    os.symlink(outside, data / "link.png")
    bomb = png(8000, 8000, "1")  # a few kilobytes that decode to 64 million pixels
    cases = [
        ([{"file": "../secret.png"}], "inputs.0.file"),
        ([{"file": str(outside)}], "inputs.0.file"),
        ([{"file": "link.png"}], "inputs.0.file"),
        ([{"file": "digits"}], "inputs.0.file"),  # a folder
        ([{"image": png()}, {"file": "missing.png"}], "inputs.1.file"),
        ([{"image": "A" * (MAX_INLINE_IMAGE_CHARS + 4)}], "inputs.0.image"),
        ([{"image": "not base64!"}], "inputs.0.image"),
        ([{"image": base64.b64encode(b"plain text").decode()}], "inputs.0.image"),
        ([{"image": bomb}], "inputs.0.image"),
        ([{"text": "a text for an image model"}], "inputs.0.text"),
        ([{"image": png(), "text": "both"}], "inputs.0"),
        ([{"image": png()}] * (MAX_INPUTS + 1), "inputs"),
        ([], "inputs"),
    ]
    for inputs, field in cases:
        refused(api.client.post(f"/api/v1/models/{model['id']}/predict", json={"inputs": inputs}), 422, field)
    refused(api.client.post(f"/api/v1/models/{model['id']}/predict", json={"inputs": [{"image": png()}], "top_k": 10**9}), 422, "top_k")
    assert Execution.select().count() == 0


def test_the_generic_enqueue_does_not_run_a_model_function(api: Any, model: dict[str, Any]) -> None:
    assert api.client.patch("/api/v1/services/mgmt-train-resnet18", json={"min_instances": 0}).status_code == 200
    body = {"function": "predict_model", "input": {"model_id": model["id"], "model_path": "/etc", "inputs": []}}
    refused(api.client.post("/api/v1/services/mgmt-train-resnet18/executions", json=body), 422, "function")
    assert Execution.select().count() == 0
