"""Checkpoints of every adapter become models, and models travel as archives, on the real stack (gunicorn
API, scheduler, process instances; SQLite with the embedded Redis): a BERT text classifier's Trainer
checkpoint folder and a YOLO training's checkpoint file become trained models that predict (and, the
text one, that a training fine-tunes from, the YOLO one that evaluates) as a finished training's
model does; each is downloaded, imported back unchanged from its archive through the CLI or the SDK,
and predicts exactly as before. Trainings are a few steps long: what is checked is the plumbing."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_checkpoints_stack import cli_of, logged
from tests.test_pipeline import wait_status
from trainfaas.adapters.shapes import write_shapes
from trainfaas.adapters.text_samples import write_text

pytestmark = [pytest.mark.stack, pytest.mark.parametrize("stack_settings", ["local"], indirect=True)]

TEXT = {"max_steps": 6, "eval_steps": 3, "save_steps": 3, "batch_size": 16, "vocab_size": 300, "max_length": 32}
YOLO = {"epochs": 1, "imgsz": 64, "batch": 16, "workers": 0, "mosaic": 0.0, "warmup_epochs": 0.0}
SENTENCES = ["the match ended in a late goal", "heavy rain and wind tomorrow", "shares fell after the report"]


def predicted(stack: Any, model_id: str, inputs: list[Any]) -> list[Any]:
    final = wait_status(stack, stack.client.predict(model_id, inputs)["id"], "success", "failed", "aborted", timeout_s=300)
    assert final["status"] == "success", final
    return list(final["output"]["predictions"])


def trained(stack: Any, name: str, architecture: str, configuration: dict[str, Any], data: Path) -> tuple[dict[str, Any], list[Any]]:
    model = stack.client.create_model(name, architecture, configuration=configuration)
    execution = stack.client.train(model["id"], str(data))
    final = wait_status(stack, execution["id"], "success", "failed", "aborted", timeout_s=420)
    assert final["status"] == "success", final
    return final, stack.client.checkpoints(execution["id"])


def test_a_text_checkpoint_becomes_a_model_that_predicts_fine_tunes_and_round_trips_as_an_archive(stack: Any, tmp_path: Path) -> None:
    cli = cli_of(stack)
    data = Path(write_text(tmp_path / "text", train_examples=160, validation_examples=40)["path"])
    execution, checkpoints = trained(stack, "news", "bert-tiny", TEXT, data)
    first = next(row for row in checkpoints if row["step"] == 3)
    made = json.loads(cli("checkpoints", "model", first["id"][:8], "--name", "news-at-3", "--json"))
    assert (made["status"], made["source_step"], made["source_execution"], made["architecture"]) == ("trained", 3, execution["id"], "bert-tiny")
    assert sorted(path.name for path in Path(made["artifact_path"]).iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "trainfaas-model.json"]
    before = predicted(stack, made["id"], SENTENCES)
    assert [row["label"] in made["labels"] for row in before] == [True] * 3

    tuned = stack.client.create_model("tuned", "bert-tiny", configuration={**TEXT, "max_steps": 2}, from_model=made["id"])
    tuning = stack.client.train(tuned["id"], str(data))
    assert wait_status(stack, tuning["id"], "success", "failed", timeout_s=300)["status"] == "success"
    assert made["artifact_path"] in logged(stack, tuning["id"], "fine-tuning from")

    cli("models", "download", made["id"][:12], "-o", str(tmp_path / "news.tar.gz"))
    imported = json.loads(cli("models", "import", "--archive", str(tmp_path / "news.tar.gz"), "--name", "news-again", "--json"))
    assert (imported["status"], imported["architecture"], imported["labels"], imported["configuration"]) == (
        "trained", "bert-tiny", made["labels"], made["configuration"])
    assert made["id"] in imported["imported_from"] and f"execution {execution['id']} step 3" in imported["imported_from"]
    assert predicted(stack, imported["id"], SENTENCES) == before


def test_a_yolo_checkpoint_becomes_a_model_that_predicts_evaluates_and_round_trips_as_an_archive(stack: Any, tmp_path: Path) -> None:
    data = Path(write_shapes(tmp_path / "shapes", train_images=16, validation_images=8, image_size=64)["path"])
    execution, checkpoints = trained(stack, "shapes", "yolov8n", YOLO, data)
    made = stack.client.model_from_checkpoint(checkpoints[-1]["id"])
    assert (made["status"], made["source_step"], made["source_execution"], made["labels"]) == (
        "trained", 1, execution["id"], ["circle", "square", "triangle"])
    images = sorted((data / "images" / "validation").iterdir())[:2]
    before = predicted(stack, made["id"], images)
    assert len(before) == 2 and all("error" not in row for row in before), before

    evaluation = wait_status(stack, stack.client.evaluate(made["id"], str(data))["id"], "success", "failed", timeout_s=300)
    assert evaluation["status"] == "success" and 0.0 <= evaluation["output"]["metrics"]["mAP50"] <= 1.0, evaluation

    stack.client.download_model(made["id"], tmp_path / "shapes.tar.gz")
    imported = stack.client.import_archive(tmp_path / "shapes.tar.gz", architecture="yolov8n")
    assert (imported["status"], imported["labels"], imported["configuration"]) == ("trained", made["labels"], made["configuration"])
    assert predicted(stack, imported["id"], images) == before
