"""The torchvision classification adapter and the image-folder data sets it reads.

Training tests use a few images per label copied from the bundled digits sample, at 16 pixels,
so that each training takes a second or two on a small CPU.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from adapters import torchvision_classification as tc
from adapters.base import NullContext
from adapters.datasets import read_image_folder, sample_writer, write_digits
from services.errors import AdapterError, ConfigError, DatasetError

FAST = {"epochs": 2, "batch_size": 16, "input_size": 16}


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(write_digits(tmp_path_factory.mktemp("sample") / "digits")["path"])


@pytest.fixture(scope="module")
def small_digits(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training and 3 validation images per label: 5 steps of 16 images per epoch."""
    dest = tmp_path_factory.mktemp("small") / "digits"
    for subset, per_label in (("train", 8), ("validation", 3)):
        for label_dir in sorted((digits / subset).iterdir()):
            (dest / subset / label_dir.name).mkdir(parents=True)
            for image in sorted(label_dir.iterdir())[:per_label]:
                shutil.copy(image, dest / subset / label_dir.name / image.name)
    return dest


class StopAfter(NullContext):
    """A context that asks to stop once should_stop() has been asked ``calls`` times."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls_left = calls

    def should_stop(self) -> bool:
        self.calls_left -= 1
        return self.calls_left < 0


def events(context: NullContext, kind: str) -> list[tuple[Any, ...]]:
    return [args for event, args in context.events if event == kind]


def train(data: Path, output: Path, context: NullContext, **options: Any) -> tuple[tc.TorchvisionClassification, dict]:
    adapter = tc.TorchvisionClassification("resnet18", configuration={**FAST, **options}, context=context)
    return adapter, adapter.train(data, output, **adapter.configuration)


def test_the_digits_sample_is_a_stratified_image_folder_written_once(digits: Path) -> None:
    labels, counts = read_image_folder(digits)
    assert labels == [str(digit) for digit in range(10)]
    assert counts == {"train": 1437, "validation": 360}
    assert sample_writer("digits") is write_digits
    image = Image.open(next((digits / "train" / "3").iterdir()))
    assert (image.mode, image.size) == ("L", (8, 8))
    before = {path: path.stat().st_mtime_ns for path in digits.rglob("*")}
    summary = write_digits(digits)
    assert (summary["train_images"], summary["validation_images"]) == (1437, 360)
    assert {path: path.stat().st_mtime_ns for path in digits.rglob("*")} == before


def test_the_adapter_serves_every_torchvision_classification_model() -> None:
    names = tc.TorchvisionClassification.architectures
    assert {"resnet18", "vit_b_16", "mobilenet_v3_small"} <= set(names)
    assert not [name for name in names if "quantized" in name or name.startswith(("r3d", "fcn", "raft", "fasterrcnn"))]


def test_training_reports_progress_metrics_and_checkpoints_and_the_model_round_trips(small_digits: Path, tmp_path: Path) -> None:
    context = NullContext()
    adapter, metrics = train(small_digits, tmp_path / "out", context)

    assert metrics["epochs"] == 2.0
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["train_loss"] > 0 and metrics["val_loss"] > 0
    assert [message.split(" train")[0] for _, message in events(context, "progress")] == ["epoch 1/2", "epoch 2/2"]
    assert [percent for percent, _ in events(context, "progress")] == [50.0, 100.0]
    reported = {(figure, legend, x) for figure, legend, x, _ in events(context, "metric")}
    assert reported == {(f, legend, x) for f in ("loss", "accuracy") for legend in ("train", "val") for x in (1, 2)}
    checkpoint_path = tmp_path / "out" / "checkpoints" / "last.pt"
    checkpoints = [(path, step) for path, step, _ in events(context, "checkpoint")]
    assert checkpoints == [(str(checkpoint_path), 1), (str(checkpoint_path), 2)]
    assert torch.load(checkpoint_path, weights_only=True)["epoch"] == 2

    adapter.save(tmp_path / "model")
    loaded = tc.TorchvisionClassification("resnet18")
    loaded.load(tmp_path / "model")
    assert loaded.labels == [str(digit) for digit in range(10)]
    images = [Image.open(next((small_digits / "validation" / "4").iterdir())), np.zeros((8, 8), dtype=np.uint8)]
    predictions = loaded.predict(images)
    assert predictions == adapter.predict(images)
    assert all(p["label"] in loaded.labels and 0.0 < p["score"] <= 1.0 for p in predictions)


def test_a_stop_request_ends_training_with_a_checkpoint(small_digits: Path, tmp_path: Path) -> None:
    # Five batches an epoch: the stop arrives before the third batch of the second epoch.
    context = StopAfter(calls=7)
    _, metrics = train(small_digits, tmp_path / "out", context, epochs=5)

    assert metrics["stopped"] == 1.0 and metrics["epochs"] == 1.0
    assert [step for _, step, _ in events(context, "checkpoint")] == [1, 1]
    assert [message.split(" train")[0] for _, message in events(context, "progress")] == ["epoch 1/5"]
    assert torch.load(tmp_path / "out" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1


def test_training_resumes_after_the_epoch_its_checkpoint_saved(small_digits: Path, tmp_path: Path) -> None:
    train(small_digits, tmp_path / "first", NullContext(), epochs=1)
    context = NullContext()
    context.resume_checkpoint = tmp_path / "first" / "checkpoints" / "last.pt"
    _, metrics = train(small_digits, tmp_path / "second", context, epochs=3)

    assert metrics["epochs"] == 3.0
    assert any("after epoch 1" in message for (message,) in events(context, "log"))
    assert sorted({x for _, _, x, _ in events(context, "metric")}) == [2, 3]
    assert [step for _, step, _ in events(context, "checkpoint")] == [2, 3]


def test_a_checkpoint_of_another_model_is_not_resumed(small_digits: Path, tmp_path: Path) -> None:
    train(small_digits, tmp_path / "first", NullContext(), epochs=1)
    context = NullContext()
    context.resume_checkpoint = tmp_path / "first" / "checkpoints" / "last.pt"
    adapter = tc.TorchvisionClassification("resnet34", configuration={**FAST, "epochs": 1}, context=context)
    with pytest.raises(AdapterError, match="resnet18"):
        adapter.train(small_digits, tmp_path / "second", **adapter.configuration)


def test_data_sets_too_large_for_memory_are_streamed_from_disk(small_digits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tc, "PRELOAD_LIMIT_BYTES", 0)
    _, metrics = train(small_digits, tmp_path / "out", NullContext(), epochs=1)
    assert metrics["epochs"] == 1.0 and 0.0 <= metrics["val_accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("configuration", "field"),
    [
        ({"epoch": 3}, "epoch"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"input_size": 8}, "input_size"),
        ({"batch_size": 5000}, "batch_size"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
    ],
)
def test_bad_options_are_refused_naming_the_field(configuration: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        tc.TorchvisionClassification.validate_configuration(configuration)
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def test_every_option_is_described() -> None:
    properties = tc.TorchvisionClassification.options_schema()["properties"]
    assert {name for name, schema in properties.items() if not schema.get("description")} == set()


def test_an_architecture_that_cannot_take_the_input_size_is_refused_naming_input_size() -> None:
    with pytest.raises(ConfigError) as caught:
        tc.build_model("alexnet", 10, 16)
    assert set(caught.value.fields) == {"input_size"}
    with pytest.raises(AdapterError):
        tc.build_model("no_such_net", 10, 32)


def test_training_without_a_data_set_is_refused(tmp_path: Path) -> None:
    adapter = tc.TorchvisionClassification("resnet18", configuration=FAST)
    with pytest.raises(DatasetError):
        adapter.train(None, tmp_path)


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(path)


def _layout(root: Path, files: list[str]) -> None:
    root.mkdir()
    for name in files:
        if name.endswith("/"):
            (root / name).mkdir(parents=True, exist_ok=True)
        elif name.lower().endswith(".png"):
            _image(root / name)
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("not an image")


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (None, "does not exist"),
        (["train/a/1.png"], "no validation/ folder"),
        (["validation/a/1.png"], "no train/ folder"),
        (["train/", "validation/a/1.png"], "train/ has no label folders"),
        (["train/a/1.png", "train/b/notes.txt", "validation/a/1.png"], "without images: b"),
        (["train/a/1.png", "validation/a/"], "validation/ has no images"),
        (["train/a/1.png", "validation/z/1.png"], "labels that train/ lacks: z"),
    ],
)
def test_a_malformed_image_folder_is_refused_saying_what_is_missing(tmp_path: Path, files: list[str] | None, problem: str) -> None:
    root = tmp_path / "data"
    if files is not None:
        _layout(root, files)
    with pytest.raises(DatasetError, match=problem) as caught:
        read_image_folder(root)
    assert "train/<label>/<image>" in caught.value.message
    assert caught.value.fields["dataset"]


def test_an_image_folder_reports_sorted_labels_and_counts_ignoring_other_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _layout(root, ["train/b/1.png", "train/a/1.PNG", "train/a/2.png", "train/a/readme.txt", "validation/a/1.png"])
    assert read_image_folder(root) == (["a", "b"], {"train": 3, "validation": 1})
