"""The ultralytics YOLO adapter and the YOLO data sets it reads.

Trainings use a small shapes sample (48 training and 16 validation images of 64 pixels) at
imgsz 64, so that an epoch takes a few seconds on a small CPU. Module-scoped fixtures share one
training between the tests that only read its results.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from tests.adapter_support import StopAfter, events
from tests.conftest import guard_network, wait_until
from trainfaas.adapters import NullContext, yolo
from trainfaas.adapters.catalog import catalog
from trainfaas.adapters.shapes import write_shapes
from trainfaas.adapters.yolo_data import build_view, read_dataset
from trainfaas.services.core.errors import AdapterError, DatasetError

TINY = {"imgsz": 64, "batch": 16, "workers": 0, "mosaic": 0.0, "warmup_epochs": 0.0}
DETECTION_FIGURES = {(loss, legend) for loss in ("box_loss", "cls_loss", "dfl_loss") for legend in ("train", "val")} | {
    (figure, "val") for figure in ("mAP50", "mAP50-95", "precision", "recall")
}


def train(architecture: str, data: Path, output: Path, context: NullContext, **options: Any) -> tuple[yolo.UltralyticsYolo, dict[str, float]]:
    adapter = yolo.UltralyticsYolo(architecture, configuration={**TINY, **options}, context=context)
    return adapter, adapter.train(data, output, **adapter.configuration)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 batches of 16 training images an epoch."""
    return Path(write_shapes(tmp_path_factory.mktemp("sample") / "shapes", train_images=48, validation_images=16, image_size=64)["path"])


@pytest.fixture(scope="module")
def trained(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[yolo.UltralyticsYolo, dict[str, float], NullContext, Path]:
    """yolov8n trained for two epochs."""
    output = tmp_path_factory.mktemp("trained")
    context = NullContext()
    with pytest.MonkeyPatch.context() as patch:
        attempts = guard_network(patch)
        adapter, metrics = train("yolov8n", shapes, output, context, epochs=2)
    assert attempts == [], f"training attempted network access: {attempts}"
    return adapter, metrics, context, output


@pytest.fixture(scope="module")
def stopped(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, float], StopAfter, Path]:
    """yolov8n planned for 4 epochs of 3 batches, asked to stop before the second batch of epoch 2."""
    output = tmp_path_factory.mktemp("stopped")
    context = StopAfter(calls=4)
    with pytest.MonkeyPatch.context() as patch:
        attempts = guard_network(patch)
        _, metrics = train("yolov8n", shapes, output, context, epochs=4)
    assert attempts == [], f"training attempted network access: {attempts}"
    return metrics, context, output


# ---- the catalog and the options -----------------------------------------------------------------


def test_the_adapter_serves_yolov8_and_yolo11_in_five_sizes_for_detection_and_segmentation() -> None:
    names = yolo.UltralyticsYolo.architectures
    assert len(names) == 20 and {"yolov8n", "yolov8x-seg", "yolo11n", "yolo11m-seg"} <= set(names)
    entries = catalog()
    assert entries["yolo11s"].task == "detection" and entries["yolov8l-seg"].task == "instance-segmentation"
    assert entries["yolov8n"].adapter == "trainfaas.adapters.yolo:UltralyticsYolo"


def test_the_reference_models_are_the_80_class_coco_configurations() -> None:
    nano = yolo.UltralyticsYolo.reference_model("yolov8n")
    assert nano.yaml["nc"] == 80 and 3.0e6 < sum(p.numel() for p in nano.parameters()) < 3.3e6  # 3.2M in ultralytics' table
    assert type(yolo.UltralyticsYolo.reference_model("yolo11n-seg")).__name__ == "SegmentationModel"


@pytest.mark.parametrize(
    ("configuration", "field"),
    [
        ({"epoch": 3}, "epoch"),
        ({"epochs": 0}, "epochs"),
        ({"imgsz": 100}, "imgsz"),
        ({"optimizer": "Adagrad"}, "optimizer"),
        ({"lr0": 0}, "lr0"),
        ({"mosaic": 1.5}, "mosaic"),
        ({"fraction": 0}, "fraction"),
        ({"max_hours": -1}, "max_hours"),
        ({"labels": []}, "labels"),
    ],
)
def test_bad_options_are_refused_naming_the_field(configuration: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        yolo.UltralyticsYolo.validate_configuration(configuration)
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def test_every_option_is_described() -> None:
    properties = yolo.UltralyticsYolo.options_schema()["properties"]
    assert {name for name, schema in properties.items() if not schema.get("description")} == set()


# ---- data sets ------------------------------------------------------------------------------------


def test_the_shapes_sample_is_a_yolo_data_set(shapes: Path) -> None:
    assert yolo.UltralyticsYolo.check_dataset(shapes, {}) == ["circle", "square", "triangle"]
    assert yolo.UltralyticsYolo.check_dataset(shapes, {"labels": ["square"]}) == ["square"]
    assert read_dataset(shapes, polygons=True).image_dirs["val"] == shapes / "images" / "validation"


def _copy(shapes: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(shapes, root)
    return root


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda root: shutil.rmtree(root), "does not exist"),
        (lambda root: _remove(root / "data.yaml"), "no data.yaml"),
        (lambda root: (root / "data.yaml").write_text("train: images/train\n"), "no names"),
        (lambda root: (root / "data.yaml").write_text("names: [a\n"), "cannot be read"),
        (lambda root: [_remove(p) for p in (root / "images" / "validation").iterdir()], "val image folder validation/ has no images"),
        (lambda root: _remove(root / "images" / "train"), "no train image folder"),
        (lambda root: (root / "labels" / "train" / "00003.txt").write_text("7 0.5 0.5 0.1 0.1\n"), "class id 7, outside 0..2"),
        (lambda root: (root / "labels" / "train" / "00003.txt").write_text("0 0.5 0.5\n"), "neither a box"),
    ],
)
def test_a_malformed_yolo_data_set_is_refused_saying_what_is_wrong(shapes: Path, tmp_path: Path, change: Any, problem: str) -> None:
    root = _copy(shapes, tmp_path)
    change(root)
    with pytest.raises(DatasetError, match=problem) as caught:
        yolo.UltralyticsYolo.check_dataset(root, {})
    assert "data.yaml" in caught.value.message and caught.value.fields["dataset"]


def test_an_unknown_label_is_refused_naming_configuration_labels(shapes: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        yolo.UltralyticsYolo.check_dataset(shapes, {"labels": ["square", "hexagon"]})
    assert set(caught.value.fields) == {"configuration.labels"} and "circle" in caught.value.fields["configuration.labels"]


def test_segmentation_needs_polygons(shapes: Path, tmp_path: Path) -> None:
    root = _copy(shapes, tmp_path)
    (root / "labels" / "train" / "00003.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    assert read_dataset(root).names == ["circle", "square", "triangle"]
    with pytest.raises(DatasetError, match="not a polygon"):
        read_dataset(root, polygons=True)


def test_a_data_yaml_naming_its_folders_with_a_val_folder_is_read(shapes: Path, tmp_path: Path) -> None:
    root = _copy(shapes, tmp_path)
    for kind in ("images", "labels"):
        os.replace(root / kind / "validation", root / kind / "val")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: circle, 1: square, 2: triangle}\n")
    assert read_dataset(root).image_dirs == {"train": root / "images" / "train", "val": root / "images" / "val"}
    (root / "data.yaml").write_text("names: [circle, square, triangle]\n")
    assert read_dataset(root).image_dirs["val"] == root / "images" / "val"


def test_a_label_subset_view_renumbers_classes_and_can_drop_negatives(shapes: Path, tmp_path: Path) -> None:
    dataset = read_dataset(shapes)
    data_yaml = build_view(dataset, tmp_path / "view", ["triangle"], include_negatives=False)
    view = data_yaml.parent
    train_labels = sorted((view / "labels" / "train").iterdir())
    assert train_labels and all(line.startswith("0 ") for f in train_labels for line in f.read_text().splitlines())
    assert all(f.read_text() for f in train_labels)  # no negatives left in training
    originals = [f for f in (shapes / "labels" / "train").iterdir() if any(line.startswith("2 ") for line in f.read_text().splitlines())]
    assert len(train_labels) == len(originals)
    assert len(list((view / "images" / "val").iterdir())) == 16  # validation keeps every image
    linked = next((view / "images" / "train").iterdir())
    assert linked.is_symlink() and linked.resolve() == shapes / "images" / "train" / linked.name
    with_negatives = build_view(dataset, tmp_path / "all", None, include_negatives=True).parent
    assert len(list((with_negatives / "images" / "train").iterdir())) == 48


# ---- training --------------------------------------------------------------------------------------


def test_training_reports_progress_metrics_and_checkpoints_without_the_network(trained: Any) -> None:
    adapter, metrics, context, output = trained
    assert metrics["epochs"] == 2.0 and 0.0 <= metrics["mAP50"] <= 1.0 and metrics["val_box_loss"] > 0
    assert [percent for percent, _ in events(context, "progress")] == [50.0, 100.0]
    assert [message.split(" train")[0] for _, message in events(context, "progress")] == ["epoch 1/2", "epoch 2/2"]
    reported = {(figure, legend, x) for figure, legend, x, _ in events(context, "metric")}
    assert reported == {(figure, legend, x) for figure, legend in DETECTION_FIGURES for x in (1, 2)}
    checkpoints = [(Path(path).name, step) for path, step, _ in events(context, "checkpoint")]
    assert ("last.pt", 1) in checkpoints and ("last.pt", 2) in checkpoints and checkpoints[0] == ("last.pt", 1)
    assert {name for name, _ in checkpoints} == {"last.pt", "best.pt"}
    saved = yolo._load_checkpoint(output / "checkpoints" / "last.pt")
    assert saved["epoch"] == 1 and saved["optimizer"] is not None  # resumable
    assert (output / "dataset" / "data.yaml").is_file()


def test_a_trained_model_saves_loads_and_predicts_boxes(trained: Any, shapes: Path, tmp_path: Path) -> None:
    adapter, _, _, _ = trained
    adapter.save(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "trainfaas.json").read_text()) == {
        "architecture": "yolov8n", "labels": ["circle", "square", "triangle"], "imgsz": 64, "task": "detection"}
    loaded = yolo.UltralyticsYolo("yolov8n")
    loaded.load(tmp_path / "model")
    images = [Image.open(shapes / "images" / "validation" / "00000.png"), np.zeros((64, 64, 3), dtype=np.uint8)]
    predictions = loaded.predict(images, conf=0.0)
    assert len(predictions) == 2 and predictions == adapter.predict(images, conf=0.0)
    found = [item for objects in predictions for item in objects]
    assert found, "with conf=0 an untrained-ish model still proposes boxes"
    assert all(item["label"] in loaded.labels and 0.0 <= item["score"] <= 1.0 and len(item["box"]) == 4 for item in found)
    with pytest.raises(AdapterError):
        yolo.UltralyticsYolo("yolov8n").predict(images)


def test_a_stop_request_ends_training_with_a_checkpoint(stopped: Any) -> None:
    metrics, context, output = stopped
    assert metrics["stopped"] == 1.0 and metrics["epochs"] == 2.0
    # The stopped epoch is validated and saved as done: ultralytics resumes after it.
    assert [step for path, step, _ in events(context, "checkpoint") if path.endswith("last.pt")] == [1, 2]
    assert [message.split(" train")[0] for _, message in events(context, "progress")] == ["epoch 1/4", "epoch 2/4"]
    assert yolo._load_checkpoint(output / "checkpoints" / "last.pt")["epoch"] == 1


def test_training_resumes_after_the_epoch_its_checkpoint_saved(stopped: Any, shapes: Path, tmp_path: Path, no_network: list[str]) -> None:
    _, _, first = stopped
    context = NullContext()
    context.resume_checkpoint = first / "checkpoints" / "last.pt"
    _, metrics = train("yolov8n", shapes, tmp_path / "second", context, epochs=4)

    assert metrics["epochs"] == 4.0 and "stopped" not in metrics
    assert ("resumed from checkpoint at step 2",) in events(context, "log")
    assert sorted({x for _, _, x, _ in events(context, "metric")}) == [3, 4]
    assert [step for path, step, _ in events(context, "checkpoint") if path.endswith("last.pt")] == [3, 4]


def test_a_rerun_of_a_finished_training_trains_no_more(trained: Any, shapes: Path, tmp_path: Path) -> None:
    _, _, _, output = trained
    context = NullContext()
    context.resume_checkpoint = output / "checkpoints" / "last.pt"
    adapter, metrics = train("yolov8n", shapes, tmp_path / "again", context, epochs=2)
    assert metrics["epochs"] == 2.0 and events(context, "metric") == []
    adapter.save(tmp_path / "model")
    assert (tmp_path / "model" / "model.pt").is_file()


def test_fine_tuning_starts_from_a_saved_model_of_the_same_architecture(trained: Any, shapes: Path, tmp_path: Path, no_network: list[str]) -> None:
    adapter, _, _, _ = trained
    adapter.save(tmp_path / "base")
    context = NullContext()
    context.base_model = tmp_path / "base"
    _, metrics = train("yolov8n", shapes, tmp_path / "tuned", context, epochs=1, fraction=0.34, labels=["square"])
    assert metrics["epochs"] == 1.0
    assert (f"fine-tuning from {tmp_path / 'base'}",) in events(context, "log")
    other = NullContext()
    other.base_model = tmp_path / "base"
    with pytest.raises(AdapterError, match="yolov8n"):
        train("yolo11n", shapes, tmp_path / "other", other, epochs=1)


def test_a_segmentation_model_trains_and_reports_mask_metrics(shapes: Path, tmp_path: Path, no_network: list[str]) -> None:
    context = NullContext()
    adapter, metrics = train("yolov8n-seg", shapes, tmp_path / "out", context, epochs=1)
    reported = {(figure, legend) for figure, legend, _, _ in events(context, "metric")}
    assert {(figure, "mask") for figure in ("mAP50", "mAP50-95", "precision", "recall")} <= reported
    assert {("seg_loss", "train"), ("seg_loss", "val")} <= reported and DETECTION_FIGURES <= reported
    assert "mask_mAP50" in metrics and metrics["epochs"] == 1.0
    predictions = adapter.predict([Image.open(shapes / "images" / "validation" / "00001.png")], conf=0.0)
    assert all("polygon" in item for item in predictions[0])


# ---- the whole pipeline -----------------------------------------------------------------------------


@pytest.mark.stack
def test_a_yolo_training_runs_through_the_pipeline(stack: Any, shapes: Path) -> None:
    model = stack.client.create_model("shapes detector", "yolov8n", configuration={**TINY, "epochs": 1})
    assert model["task"] == "detection"
    execution = stack.client.train(model["id"], dataset=str(shapes))
    assert execution["service"] == "mgmt-train-yolov8n"

    final = wait_until(lambda: (e := stack.client.get_execution(execution["id"]))["status"] in ("success", "failed", "aborted") and e,
                       240, "the yolo training to end")

    assert final["status"] == "success", final
    figures = {(m["figure"], m["legend"]) for m in stack.client.metrics(execution["id"])}
    assert DETECTION_FIGURES <= figures
    artifacts = stack.client.artifacts(execution["id"])
    assert {"checkpoint", "model"} <= {a["kind"] for a in artifacts}
    trained = stack.client.get_model(model["id"])
    assert trained["status"] == "trained" and trained["labels"] == ["circle", "square", "triangle"]
    assert os.path.exists(os.path.join(trained["artifact_path"], "model.pt"))


@pytest.mark.stack
def test_a_bad_yolo_request_is_refused_before_anything_is_queued(stack: Any, shapes: Path, tmp_path: Path) -> None:
    from trainfaas.services.sdk.client import ApiError

    model = stack.client.create_model("shapes detector", "yolov8n-seg", configuration=TINY)
    assert model["task"] == "instance-segmentation"
    with pytest.raises(ApiError) as caught:
        stack.client.train(model["id"], dataset=str(shapes), configuration={"labels": ["hexagon"]})
    assert caught.value.status == 422 and set(caught.value.fields) == {"configuration.labels"}
    with pytest.raises(ApiError) as caught:
        stack.client.train(model["id"], dataset=str(tmp_path / "missing"))
    assert caught.value.status == 422 and "does not exist" in caught.value.fields["dataset"]
    assert stack.client.get_model(model["id"])["status"] != "pending"
