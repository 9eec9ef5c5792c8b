"""Quick start: a training given no options chooses its input size and length from its data set,
and says so. Tested on data sets generated here, unlike the bundled digits sample."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.adapter_support import events
from tests.generated_images import write_shapes
from trainfaas.adapters import NullContext, shapes, torchvision_segmentation, yolo
from trainfaas.adapters import torchvision_classification as tc
from trainfaas.adapters.classification_images import plan_labels
from trainfaas.adapters.classification_options import ClassificationOptions
from trainfaas.adapters.quick_start import (
    QUICK_MIN_STEPS,
    QUICK_TRANSLATE,
    derived_epochs,
    derived_imgsz,
    derived_input_size,
    derived_segmentation_size,
    derived_translate,
    image_sides,
)


def test_image_sides_read_headers_of_an_even_sample_and_skip_unreadable_files(tmp_path: Path) -> None:
    paths = []
    for index in range(10):
        path = tmp_path / f"{index}.png"
        Image.new("RGB", (40 + index, 30 + index)).save(path)
        paths.append(path)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert image_sides([*paths, tmp_path / "broken.png"]) == [30 + index for index in range(10)]
    assert image_sides(paths, sample=5) == [30, 32, 34, 36, 38]
    assert image_sides([]) == []


@pytest.mark.parametrize("sides, smallest, size", [
    ([8] * 9, 16, 16), ([32] * 5 + [300] * 4, 16, 32), ([45, 47, 50], 16, 48), ([500, 375, 640], 16, 224),
    ([32, 32], 64, 64), ([], 16, 16),
])
def test_the_input_size_is_the_median_shorter_side_rounded_and_bounded(sides: list[int], smallest: int, size: int) -> None:
    chosen, why = derived_input_size(sides, smallest)
    assert chosen == size and why


def test_a_small_data_set_trains_for_a_minimum_of_steps_a_large_one_for_eight_epochs() -> None:
    epochs, why = derived_epochs(300, 64)
    assert epochs * 5 >= QUICK_MIN_STEPS and (epochs - 1) * 5 < QUICK_MIN_STEPS and "300 training images" in why
    assert derived_epochs(100_000, 64)[0] == 8
    assert derived_epochs(2, 64)[0] == 200  # one step an epoch: capped


def test_a_training_without_options_chooses_from_the_data_and_logs_why(tmp_path: Path, no_network: list[str]) -> None:
    data = write_shapes(tmp_path / "shapes", classes=4, side=40, train=6, validation=2, seed=3, grayscale=True)
    context = NullContext()
    adapter = tc.TorchvisionClassification("resnet18", configuration={"max_steps": 2, "batch_size": 8}, context=context)
    adapter.train(data, tmp_path / "out", **adapter.configuration)
    lines = [line for (line,) in events(context, "log")]
    assert "quick start: input_size 40: the median training image is 40 pixels on its shorter side (24 measured)" in lines
    assert adapter.input_size == 40 and not any("quick start: epochs" in line for line in lines)
    assert ("quick start: random_translate 0.125: 24 training images, 6 a class: a small set is learnt by heart unless it"
            " varies; a shift of up to 0.125 of the side keeps what an image shows") in lines


@pytest.mark.parametrize("images, classes, share, per_class", [
    (300, 3, QUICK_TRANSLATE, "100 a class"), (1437, 10, QUICK_TRANSLATE, "143 a class"), (24, 4, QUICK_TRANSLATE, "6 a class"),
    (9990, 10, QUICK_TRANSLATE, "999 a class"), (2000, 2, 0.0, "1000 a class"), (50_000, 10, 0.0, "5000 a class"),
])
def test_a_small_data_set_trains_on_shifted_images_a_large_one_as_it_is(images: int, classes: int, share: float, per_class: str) -> None:
    chosen, why = derived_translate(images, classes)
    assert chosen == share and f"{images} training images, {per_class}" in why


@pytest.mark.parametrize("given, expected, logged", [
    ({}, {"input_size": 24, "epochs": 50, "random_translate": QUICK_TRANSLATE}, {"input_size", "epochs", "random_translate"}),
    ({"input_size": 32, "epochs": 3, "random_translate": 0.0}, {"input_size": 32, "epochs": 3, "random_translate": 0.0}, set()),
    ({"random_translate": 0.3, "max_steps": 5}, {"input_size": 24, "epochs": 8, "random_translate": 0.3}, {"input_size"}),
    ({"random_crop": True}, {"random_translate": 0.0, "random_crop": True}, {"input_size", "epochs"}),
])
def test_the_quick_start_fills_only_what_the_user_left_unset(tmp_path: Path, given: dict[str, object], expected: dict[str, object],
                                                             logged: set[str]) -> None:
    data = write_shapes(tmp_path / "shapes", classes=2, side=24, train=100, validation=2, seed=5, image_format="jpeg")
    options = ClassificationOptions.model_validate(given)
    context = NullContext()
    adapter = tc.TorchvisionClassification("resnet18", configuration=given, context=context)
    chosen = adapter._quick_start(options, data / "train", plan_labels(data, None, False))
    assert {key: getattr(chosen, key) for key in expected} == expected
    assert {line.split()[2] for (line,) in events(context, "log")} == logged


def test_an_architecture_that_needs_larger_images_gets_its_smallest_size(tmp_path: Path, no_network: list[str]) -> None:
    data = write_shapes(tmp_path / "shapes", classes=2, side=24, train=4, validation=1, seed=4)
    context = NullContext()
    adapter = tc.TorchvisionClassification("alexnet", configuration={"max_steps": 1, "batch_size": 4}, context=context)
    adapter.train(data, tmp_path / "out", **adapter.configuration)
    line = next(line for (line,) in events(context, "log") if line.startswith("quick start: input_size"))
    assert line.startswith("quick start: input_size 64:") and "alexnet needs at least 64" in line


def test_image_sides_can_measure_the_longer_side(tmp_path: Path) -> None:
    Image.new("RGB", (90, 30)).save(tmp_path / "wide.png")
    assert image_sides([tmp_path / "wide.png"]) == [30] and image_sides([tmp_path / "wide.png"], longer=True) == [90]


@pytest.mark.parametrize("sides, size", [([128] * 5, 64), ([100, 200, 300], 96), ([40], 64), ([5000], 512), ([], 64)])
def test_segmentation_trains_at_half_the_median_shorter_side(sides: list[int], size: int) -> None:
    chosen, why = derived_segmentation_size(sides)
    assert chosen == size and chosen % 16 == 0 and why


@pytest.mark.parametrize("sides, size", [([128] * 3, 128), ([200, 210, 700], 224), ([40], 64), ([4000], 640), ([], 64)])
def test_yolo_letterboxes_to_the_median_longer_side(sides: list[int], size: int) -> None:
    chosen, why = derived_imgsz(sides)
    assert chosen == size and chosen % 32 == 0 and why


def test_segmentation_and_yolo_without_a_size_choose_it_from_images_unlike_the_sample(tmp_path: Path, no_network: list[str]) -> None:
    data = Path(shapes.write_shapes(tmp_path / "shapes", train_images=4, validation_images=2, image_size=200, seed=9)["path"])
    context = NullContext()
    segmenter = torchvision_segmentation.TorchvisionSegmentation(
        "lraspp_mobilenet_v3_large", configuration={"max_steps": 1, "batch_size": 2}, context=context)
    segmenter.train(data, tmp_path / "segmentation", **segmenter.configuration)
    assert segmenter.input_size == 96 and ("quick start: input_size 96: half the median shorter side of the training images"
                                           " (200 pixels, 4 measured), a multiple of 16 within 64-512",) in events(context, "log")

    context = NullContext()
    detector = yolo.UltralyticsYolo("yolov8n", configuration={"epochs": 1, "batch": 4, "workers": 0, "mosaic": 0.0}, context=context)
    detector.train(data, tmp_path / "yolo", **detector.configuration)
    assert detector.imgsz == 192 and any(line.startswith("quick start: imgsz 192: the median longer side of the training"
                                                         " images is 200 pixels") for (line,) in events(context, "log"))


def test_a_quick_start_learns_a_generated_set_unlike_the_sample(tmp_path: Path, no_network: list[str]) -> None:
    """No options at all, on 24x24 JPEG shapes in four classes (the sample is 8x8 digits in ten): the
    choices it logs make resnet18 learn the set. The run is seeded, so it repeats; the same set in
    tests/perf/bench_quick_start.py compares it with a standard recipe and times it."""
    data = write_shapes(tmp_path / "jpeg24", classes=4, side=24, train=80, validation=25, seed=13, image_format="jpeg")
    context = NullContext()
    adapter = tc.TorchvisionClassification("resnet18", configuration={}, context=context)
    metrics = adapter.train(data, tmp_path / "out", **adapter.configuration)
    lines = [line for (line,) in events(context, "log")]
    assert any(line.startswith("quick start: input_size 24:") for line in lines)
    assert any(line.startswith("quick start: epochs 40: 320 training images make 5 steps an epoch") for line in lines)
    assert metrics["val_accuracy"] >= 0.95, lines
