"""The torchvision semantic segmentation adapter and the image-mask data sets it reads.

Training tests use a small shapes sample (16 training and 8 validation images of 64 pixels) at
32 pixels, so that each training takes a few seconds on a small CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from tests.adapter_support import StopAfter, events
from trainfaas.adapters import NullContext
from trainfaas.adapters import torchvision_segmentation as ts
from trainfaas.adapters.catalog import catalog, get_adapter
from trainfaas.adapters.masks import read_image_mask, value_map
from trainfaas.adapters.shapes import write_shapes
from trainfaas.adapters.vision_training import MODEL_FILE
from trainfaas.services.core.errors import AdapterError, ConfigError, DatasetError
from trainfaas.services.sdk.client import ApiError

ARCHITECTURE = "lraspp_mobilenet_v3_large"
# Two steps an epoch (8 images each), evaluated every step, with every augmentation: tiny and deterministic.
FAST = {"epochs": 2, "batch_size": 8, "input_size": 32, "warmup_steps": 0, "eval_every_steps": 1,
        "random_scale_min": 0.75, "random_scale_max": 1.25}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(write_shapes(tmp_path_factory.mktemp("sample") / "shapes", train_images=16, validation_images=8, image_size=64)["path"])


@pytest.fixture
def copy_of_shapes(shapes: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(shapes, tmp_path / "shapes"))


def train(data: Path, output: Path, context: NullContext, **options: Any) -> tuple[ts.TorchvisionSegmentation, dict[str, float]]:
    adapter = ts.TorchvisionSegmentation(ARCHITECTURE, configuration={**FAST, **options}, context=context)
    return adapter, adapter.train(data, output, **adapter.configuration)


# ---- data sets ------------------------------------------------------------------------------------


def test_the_shapes_sample_is_an_image_mask_data_set_with_its_labels(shapes: Path) -> None:
    dataset = read_image_mask(shapes)
    assert dataset.labels == ["circle", "square", "triangle"]
    assert {subset: len(pairs) for subset, pairs in dataset.pairs.items()} == {"train": 16, "validation": 8}
    assert all(image.stem == mask.stem and mask.parent.parent.name == "masks" for image, mask in dataset.pairs["train"])
    assert ts.TorchvisionSegmentation.check_dataset(shapes, {}) == ["circle", "square", "triangle"]
    assert ts.TorchvisionSegmentation.check_dataset(shapes, {"labels": ["triangle", "circle"]}) == ["circle", "triangle"]


def test_a_validation_folder_named_val_is_accepted(copy_of_shapes: Path) -> None:
    for folder in ("images", "masks"):
        (copy_of_shapes / folder / "validation").rename(copy_of_shapes / folder / "val")
    assert len(read_image_mask(copy_of_shapes).pairs["validation"]) == 8


def _break(root: Path, change: str) -> None:
    if change == "no labels.json":
        (root / "labels.json").unlink()
    elif change == "mask missing":
        (root / "masks" / "train" / "00003.png").unlink()
    elif change == "empty validation":
        for image in (root / "images" / "validation").iterdir():
            image.unlink()
    elif change == "no masks folder":
        shutil.rmtree(root / "masks" / "validation")
    elif change == "labels.json without labels":
        (root / "labels.json").write_text(json.dumps({"names": ["a"]}))
    elif change == "mask value beyond the labels":
        Image.fromarray(np.full((64, 64), 7, dtype=np.uint8)).save(root / "masks" / "train" / "00000.png")
    elif change == "rgb mask":
        Image.new("RGB", (64, 64)).save(root / "masks" / "train" / "00000.png")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("no labels.json", "no labels.json"),
        ("mask missing", "images without a mask in masks/train/: 00003.png"),
        ("empty validation", "the validation subset is empty"),
        ("no masks folder", "no masks/validation/ folder"),
        ("labels.json without labels", "must hold"),
        ("mask value beyond the labels", r"values \[7\] beyond the 3 labels"),
        ("rgb mask", "not an 8-bit single-channel PNG"),
    ],
)
def test_a_malformed_image_mask_data_set_is_refused_saying_what_is_wrong(copy_of_shapes: Path, change: str, problem: str) -> None:
    _break(copy_of_shapes, change)
    with pytest.raises(DatasetError, match=problem) as caught:
        ts.TorchvisionSegmentation.check_dataset(copy_of_shapes, {})
    assert "masks/{train,validation}/<name>.png" in caught.value.message
    assert caught.value.fields["dataset"]


def test_a_missing_data_set_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        ts.TorchvisionSegmentation.check_dataset(tmp_path / "nowhere", {})


def test_an_unknown_label_in_the_subset_is_refused_naming_configuration_labels(shapes: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        ts.TorchvisionSegmentation.check_dataset(shapes, {"labels": ["circle", "hexagon"]})
    assert set(caught.value.fields) == {"configuration.labels"} and "hexagon" in caught.value.fields["configuration.labels"]


def test_labels_left_out_become_background_and_255_stays_ignored() -> None:
    table = value_map(["circle", "square", "triangle"], ["circle", "triangle"])
    assert table[:5] == [0, 1, 0, 2, 255] and table[255] == 255


# ---- options and models ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configuration", "field"),
    [
        ({"epoch": 3}, "epoch"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
        ({"input_size": 16}, "input_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"random_scale_min": 1.5, "random_scale_max": 1.0}, "random_scale_max"),
        ({"labels": []}, "labels"),
        ({"max_hours": 0}, "max_hours"),
    ],
)
def test_bad_options_are_refused_naming_the_field(configuration: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ts.TorchvisionSegmentation.validate_configuration(configuration)
    assert [error["loc"][0] for error in caught.value.errors()] == [field]


def test_every_option_is_described() -> None:
    properties = ts.TorchvisionSegmentation.options_schema()["properties"]
    assert {name for name, schema in properties.items() if not schema.get("description")} == set()


def test_every_torchvision_segmentation_model_is_served_and_catalogued() -> None:
    assert ts.TorchvisionSegmentation.architectures == (
        "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet101", "deeplabv3_resnet50",
        "fcn_resnet101", "fcn_resnet50", "lraspp_mobilenet_v3_large",
    )
    assert get_adapter(ARCHITECTURE) is ts.TorchvisionSegmentation
    assert catalog()["fcn_resnet50"].task == "semantic-segmentation"


@pytest.mark.parametrize("architecture", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_the_reference_model_has_as_many_parameters_as_torchvisions_published_weights(architecture: str) -> None:
    from torchvision.models import get_model_weights

    model = ts.TorchvisionSegmentation.reference_model(architecture)
    assert sum(p.numel() for p in model.parameters()) == get_model_weights(architecture).DEFAULT.meta["num_params"]


def test_an_auxiliary_head_is_refused_for_lraspp_naming_aux_loss() -> None:
    with pytest.raises(ConfigError) as caught:
        ts.build_model(ARCHITECTURE, 4, aux_loss=True)
    assert set(caught.value.fields) == {"aux_loss"}
    with pytest.raises(AdapterError):
        ts.build_model("unet", 4)


def test_iou_comes_from_the_confusion_matrix_ignoring_255() -> None:
    targets = torch.tensor([[0, 0, 1, 1, 255]])
    predictions = torch.tensor([[0, 1, 1, 1, 0]])
    matrix = ts.confusion_matrix(predictions, targets, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    iou, mean_iou, accuracy = ts.scores(matrix)
    assert iou[:2].tolist() == [0.5, 2 / 3] and iou[2].isnan()
    assert mean_iou == pytest.approx((0.5 + 2 / 3) / 2) and accuracy == 0.75


@pytest.mark.parametrize("schedule", ["poly", "cosine", "step"])
def test_the_learning_rate_warms_up_then_falls(schedule: str) -> None:
    options = ts.SegmentationOptions(learning_rate=1.0, warmup_steps=4, lr_schedule=schedule)
    rates = [ts.learning_rate_at(step, 100, options) for step in range(100)]
    assert rates[:4] == [0.25, 0.5, 0.75, 1.0] and rates[4] == 1.0
    assert all(later <= earlier for earlier, later in zip(rates[4:], rates[5:], strict=False)) and rates[-1] < 0.1


@pytest.mark.parametrize(("zoom", "kept_pixels"), [(0.5, 16 * 16), (2.0, 32 * 32)])
def test_zooming_out_pads_with_ignored_pixels_and_zooming_in_crops(zoom: float, kept_pixels: int) -> None:
    options = ts.SegmentationOptions(horizontal_flip=False, random_scale_min=zoom, random_scale_max=zoom)
    images, masks = torch.ones(2, 3, 32, 32), torch.ones(2, 32, 32, dtype=torch.long)
    out_images, out_masks = ts._augment(images, masks, options, torch.Generator().manual_seed(0))

    assert out_images.shape == (2, 3, 32, 32) and out_masks.shape == (2, 32, 32)
    assert int((out_masks == 1).sum()) == 2 * kept_pixels
    assert int((out_masks == 255).sum()) == 2 * (32 * 32 - kept_pixels)
    assert bool((out_images.sum(dim=1) == 0).eq(out_masks == 255).all())


# ---- training -------------------------------------------------------------------------------------


def test_training_reports_progress_metrics_and_checkpoints_and_the_model_round_trips(
    shapes: Path, tmp_path: Path, no_network: list[str]
) -> None:
    context = NullContext()
    adapter, metrics = train(shapes, tmp_path / "out", context)

    assert metrics["steps"] == 4.0 and metrics["epochs"] == 2.0
    assert 0.0 <= metrics["val_mIoU"] <= 1.0 and 0.0 <= metrics["val_pixel_accuracy"] <= 1.0
    assert metrics["train_loss"] > 0 and metrics["val_loss"] > 0 and "val_IoU_background" in metrics
    assert [percent for percent, _ in events(context, "progress")] == [25.0, 50.0, 75.0, 100.0]
    assert all("val mIoU" in message for _, message in events(context, "progress"))
    reported = {(figure, legend, x) for figure, legend, x, _ in events(context, "metric")}
    assert reported == {(f, legend, x) for f, legend in (("loss", "train"), ("loss", "val"), ("mIoU", "val"), ("pixel_accuracy", "val"))
                        for x in (1, 2, 3, 4)}
    checkpoints = tmp_path / "out" / "checkpoints"
    written = [(Path(path).name, step) for path, step, _ in events(context, "checkpoint")]
    assert [entry for entry in written if entry[0] == "last.pt"] == [("last.pt", step) for step in (1, 2, 3, 4)]
    best = [step for name, step in written if name == "best.pt"]
    assert best[0] == 1 and best == sorted(best)
    saved_best = torch.load(checkpoints / "best.pt", weights_only=True)
    assert saved_best["step"] == best[-1] and saved_best["best_miou"] == max(m for f, _, _, m in events(context, "metric") if f == "mIoU")
    assert torch.load(checkpoints / "last.pt", weights_only=True)["step"] == 4
    assert not list(checkpoints.glob(".*partial"))

    adapter.save(tmp_path / "model")
    loaded = ts.TorchvisionSegmentation(ARCHITECTURE)
    loaded.load(tmp_path / "model")
    assert loaded.labels == ["circle", "square", "triangle"]
    images = [Image.open(next((shapes / "images" / "validation").iterdir())), np.zeros((40, 50, 3), dtype=np.uint8)]
    predictions = loaded.predict(images)
    expected = adapter.predict(images)
    assert [p["mask"].shape for p in predictions] == [(64, 64), (40, 50)]
    assert all(np.array_equal(p["mask"], e["mask"]) and p["labels"] == e["labels"] for p, e in zip(predictions, expected, strict=True))
    assert all(p["mask"].dtype == np.uint8 and p["mask"].max() <= 3 for p in predictions)


def test_a_stop_request_ends_training_with_a_checkpoint_at_its_step(shapes: Path, tmp_path: Path, no_network: list[str]) -> None:
    # should_stop() is asked before every step: the fourth question comes before step 4.
    context = StopAfter(calls=3)
    _, metrics = train(shapes, tmp_path / "out", context, epochs=5)

    assert metrics["stopped"] == 1.0 and metrics["steps"] == 3.0
    last = [step for path, step, _ in events(context, "checkpoint") if path.endswith("last.pt")]
    assert last[-1] == 3
    assert torch.load(tmp_path / "out" / "checkpoints" / "last.pt", weights_only=True)["step"] == 3


def test_a_spent_time_budget_ends_training_after_evaluating_and_checkpointing(shapes: Path, tmp_path: Path, no_network: list[str]) -> None:
    # A budget of a few microseconds is spent by the first step, whatever the machine.
    context = NullContext()
    _, metrics = train(shapes, tmp_path / "out", context, max_hours=1e-9, eval_every_steps=None)

    assert metrics["time_limited"] == 1.0 and metrics["steps"] == 1.0 and "val_mIoU" in metrics
    # One state, written once as last.pt and given to best.pt too, as classification does.
    assert [(Path(path).name, step) for path, step, _ in events(context, "checkpoint")] == [("last.pt", 1), ("best.pt", 1)]


def test_training_resumes_at_the_step_of_its_checkpoint_with_its_weights(shapes: Path, tmp_path: Path, no_network: list[str]) -> None:
    first, _ = train(shapes, tmp_path / "first", StopAfter(calls=3), epochs=2)
    checkpoint = tmp_path / "first" / "checkpoints" / "last.pt"
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == 3

    context = NullContext()
    context.resume_checkpoint = checkpoint
    _, metrics = train(shapes, tmp_path / "second", context, epochs=3)

    assert ("resumed from checkpoint at step 3",) in events(context, "log")
    assert min(x for _, _, x, _ in events(context, "metric")) == 4 > saved["step"]
    assert [step for path, step, _ in events(context, "checkpoint") if path.endswith("last.pt")] == [4, 5, 6]
    assert metrics["steps"] == 6.0

    # Resumed with no step left, the model holds exactly the checkpoint's weights.
    done = NullContext()
    done.resume_checkpoint = checkpoint
    resumed, _ = train(shapes, tmp_path / "third", done, max_steps=3)
    assert resumed.model is not None
    assert all(torch.equal(resumed.model.state_dict()[key], value) for key, value in saved["model"].items())


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(shapes: Path, tmp_path: Path, no_network: list[str]) -> None:
    whole, _ = train(shapes, tmp_path / "whole", NullContext(), epochs=2, eval_every_steps=4)
    train(shapes, tmp_path / "first", StopAfter(calls=1), epochs=2, eval_every_steps=4)
    context = NullContext()
    context.resume_checkpoint = tmp_path / "first" / "checkpoints" / "last.pt"
    resumed, _ = train(shapes, tmp_path / "second", context, epochs=2, eval_every_steps=4)

    assert whole.model is not None and resumed.model is not None
    for (name, expected), actual in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(expected.float(), actual.float(), atol=1e-5), name


def test_a_checkpoint_of_another_model_is_not_resumed(shapes: Path, tmp_path: Path, no_network: list[str]) -> None:
    train(shapes, tmp_path / "first", StopAfter(calls=1))
    context = NullContext()
    context.resume_checkpoint = tmp_path / "first" / "checkpoints" / "last.pt"
    with pytest.raises(AdapterError, match="circle"):
        train(shapes, tmp_path / "second", context, labels=["circle"])


def test_a_label_subset_trains_those_labels_only_and_can_drop_negatives(shapes: Path, tmp_path: Path, no_network: list[str]) -> None:
    context = NullContext()
    adapter, metrics = train(shapes, tmp_path / "out", context, labels=["square"], include_negatives=False, epochs=1)

    assert adapter.labels == ["square"]
    assert set(key for key in metrics if key.startswith("val_IoU_")) <= {"val_IoU_background", "val_IoU_square"}
    kept = [message for (message,) in events(context, "log") if message.startswith("include_negatives=false")]
    squares = sum(1 for _, mask in read_image_mask(shapes).pairs["train"] if 2 in np.asarray(Image.open(mask)))
    assert kept == [f"include_negatives=false: kept {squares} of 16 training images"] and 0 < squares < 16
    assert adapter.model is not None and adapter.model.classifier.high_classifier.out_channels == 2


def test_fine_tuning_starts_from_a_saved_model_with_new_class_layers(shapes: Path, tmp_path: Path, no_network: list[str]) -> None:
    base, _ = train(shapes, tmp_path / "base", NullContext(), epochs=1)
    base.save(tmp_path / "base-model")
    context = NullContext()
    context.base_model = tmp_path / "base-model"
    # One step at a negligible rate: the convolutions keep the base model's weights.
    tuned, _ = train(shapes, tmp_path / "tuned", context, labels=["circle"], max_steps=1, learning_rate=1e-12, weight_decay=0)

    assert base.model is not None and tuned.model is not None
    base_weights, tuned_weights = base.model.state_dict(), tuned.model.state_dict()
    assert torch.allclose(tuned_weights["backbone.0.0.weight"], base_weights["backbone.0.0.weight"], atol=1e-9)
    torch.manual_seed(0)  # the initialisation the tuned run would have kept without its base model
    assert not torch.allclose(tuned_weights["backbone.0.0.weight"], ts.build_model(ARCHITECTURE, 2).state_dict()["backbone.0.0.weight"])
    assert tuned_weights["classifier.low_classifier.weight"].shape[0] == 2
    assert any(message.startswith("fine-tuning from") and "classifier.low_classifier" in message for (message,) in events(context, "log"))


def test_training_without_a_data_set_is_refused(tmp_path: Path) -> None:
    adapter = ts.TorchvisionSegmentation(ARCHITECTURE, configuration=FAST)
    with pytest.raises(DatasetError):
        adapter.train(None, tmp_path)


# ---- through the real pipeline -------------------------------------------------------------------


@pytest.mark.stack
def test_a_segmentation_training_over_http_succeeds_with_metrics_and_checkpoints(stack: Any, shapes: Path, tmp_path: Path) -> None:
    model = stack.client.create_model("shapes", ARCHITECTURE, configuration={**FAST, "epochs": 1})
    incomplete = Path(shutil.copytree(shapes, tmp_path / "incomplete"))
    (incomplete / "masks" / "validation" / "00002.png").unlink()
    for dataset, configuration, field in ((str(incomplete), None, "dataset"), (str(shapes), {"labels": ["hexagon"]}, "configuration.labels")):
        with pytest.raises(ApiError) as caught:
            stack.client.train(model["id"], dataset=dataset, configuration=configuration)
        assert caught.value.status == 422 and field in caught.value.fields, caught.value
    assert stack.client.list_executions() == []

    execution = stack.client.train(model["id"], dataset=str(shapes))
    assert execution["service"] == f"mgmt-train-{ARCHITECTURE}"
    final = stack.client.wait(execution["id"], timeout_s=300)

    assert final["status"] == "success", final
    assert final["progress"] == 100
    recorded = {(m["figure"], m["legend"], m["x"]) for m in stack.client.metrics(execution["id"]) if m["figure"] != "system"}
    assert recorded == {(f, legend, x) for f, legend in (("loss", "train"), ("loss", "val"), ("mIoU", "val"), ("pixel_accuracy", "val"))
                        for x in (1, 2)}
    artifacts = stack.client.artifacts(execution["id"])
    kept = stack.client.checkpoints(execution["id"])  # each a file of its own: step-<n>.pt
    assert {c["step"] for c in kept} == {1, 2} and sum(c["is_best"] for c in kept) == 1
    assert all(Path(a["path"]).name.startswith("step-") for a in artifacts if a["kind"] == "checkpoint")
    assert [a["kind"] for a in artifacts].count("model") == 1
    trained = stack.client.get_model(model["id"])
    assert trained["status"] == "trained" and trained["labels"] == ["circle", "square", "triangle"]
    assert (Path(trained["artifact_path"]) / MODEL_FILE).exists()
