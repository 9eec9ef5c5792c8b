"""Evaluate and predict end to end on the real stack: a small digits classifier is trained, then
evaluated and run on files of the data roots and inline images, over HTTP, the SDK and the CLI,
as executions of its service that leave the model trained."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.adapter_support import first_images
from tests.test_pipeline import wait_status
from trainfaas.adapters.datasets import write_digits
from trainfaas.services.cli.main import main
from trainfaas.services.sdk.client import ApiError

pytestmark = pytest.mark.stack
DIGITS = [str(digit) for digit in range(10)]


def cli(stack: Any, *args: str) -> Any:
    env = {"TRAINFAAS_HOME": str(stack.settings.home), "TRAINFAAS_API_URL": stack.settings.api_url}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_a_trained_classifier_is_evaluated_and_predicts_through_the_stack(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    digits = Path(write_digits(tmp_path_factory.mktemp("sample") / "digits")["path"])
    data = first_images(digits, tmp_path_factory.mktemp("small") / "digits")
    model = stack.client.create_model("digits", "resnet18", configuration={"epochs": 1, "batch_size": 16, "input_size": 16, "warmup_steps": 0})
    assert wait_status(stack, stack.client.train(model["id"], str(data))["id"], "success", "failed", timeout_s=240)["status"] == "success"

    evaluation = stack.client.evaluate(model["id"], str(data))
    final = wait_status(stack, evaluation["id"], "success", "failed", "aborted", timeout_s=240)
    assert final["status"] == "success", final
    assert (final["function"], final["model_id"], final["service"]) == ("evaluate_model", model["id"], "mgmt-train-resnet18")
    metrics = final["output"]["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["samples"] == 30
    assert np.array(metrics["confusion_matrix"]).shape == (10, 10) and set(metrics["per_class"]) == set(DIGITS)
    assert [row["status"] for row in final["status_log"]] == ["created", "pending", "in-progress", "success"]
    assert stack.client.get_model(model["id"])["status"] == "trained"

    inside = Path(stack.settings.dataset_roots[0]) / "inputs"
    inside.mkdir()
    image = shutil.copy(next((data / "validation" / "7").iterdir()), inside / "seven.png")
    (inside / "notes.png").write_text("not an image")  # read by the work process only: its own error
    prediction = stack.client.predict(model["id"], [{"file": "inputs/seven.png"}, Path(image), {"file": "inputs/notes.png"}], top_k=3)
    final = wait_status(stack, prediction["id"], "success", "failed", "aborted", timeout_s=240)
    assert final["status"] == "success" and final["function"] == "predict_model", final
    first, second, broken = final["output"]["predictions"]
    assert first["input"] == "inputs/seven.png" and first["label"] in DIGITS and len(first["scores"]) == 3
    assert second["label"] == first["label"] and "error" in broken
    assert stack.client.get_model(model["id"])["status"] == "trained"


def test_the_cli_evaluates_and_predicts_and_prints_what_came_out(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    digits = Path(write_digits(tmp_path_factory.mktemp("sample") / "digits")["path"])
    data = first_images(digits, tmp_path_factory.mktemp("small") / "digits", train=4, validation=2)
    model = stack.client.create_model("digits", "resnet18", configuration={"epochs": 1, "batch_size": 8, "input_size": 16, "warmup_steps": 0})
    assert wait_status(stack, stack.client.train(model["id"], str(data))["id"], "success", "failed", timeout_s=240)["status"] == "success"

    result = cli(stack, "evaluate", model["id"], "--dataset", str(data), "--follow")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "per class" in result.output
    image = next((data / "validation" / "4").iterdir())
    result = cli(stack, "predict", model["id"], str(image), "--follow", "--json", "--top-k", "2")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.output[result.output.index("{"):])["output"]["predictions"]
    assert predictions[0]["label"] in DIGITS and len(predictions[0]["scores"]) == 2


def test_a_prediction_runs_on_each_stack_and_a_model_that_cannot_evaluate_is_refused(stack: Any) -> None:
    model = stack.client.create_model("drill", "sleep", configuration={"seconds": 0.1, "steps": 1})
    assert wait_status(stack, stack.client.train(model["id"])["id"], "success", "failed", timeout_s=120)["status"] == "success"
    image = Path(stack.settings.dataset_roots[0]) / "blank.png"
    Image.new("RGB", (4, 4)).save(image)

    final = wait_status(stack, stack.client.predict(model["id"], [{"file": "blank.png"}, image.read_bytes()])["id"], "success", "failed",
                        timeout_s=120)
    assert final["status"] == "success" and final["model_id"] == model["id"], final
    assert final["output"]["predictions"] == [{"input": "blank.png", "prediction": None}, {"input": "input 1", "prediction": None}]
    with pytest.raises(ApiError) as refused:
        stack.client.evaluate(model["id"], "anything")
    assert refused.value.status == 422 and "model_id" in refused.value.fields
    assert stack.client.get_model(model["id"])["status"] == "trained"
