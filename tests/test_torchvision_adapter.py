"""The torchvision classification adapter and the image-folder data sets it reads.

Training tests use a few images per label copied from the bundled digits sample, at 16 pixels,
so that each training takes a second or two on a small CPU.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from trainfaas.adapters import torchvision_classification as tc
from trainfaas.adapters.base import NullContext
from trainfaas.adapters.datasets import read_image_folder, sample_writer, write_digits
from trainfaas.services.core.errors import AdapterError, ConfigError, DatasetError
from trainfaas.services.sdk.client import ApiError

from tests.adapter_support import StopAfter, events

# Five steps an epoch (80 training images in batches of 16), no warm-up: tiny and deterministic.
FAST = {"epochs": 2, "batch_size": 16, "input_size": 16, "warmup_steps": 0}
DIGITS = [str(digit) for digit in range(10)]


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


def train(data: Path, output: Path, context: NullContext, architecture: str = "resnet18",
          **options: Any) -> tuple[tc.TorchvisionClassification, dict[str, float]]:
    adapter = tc.TorchvisionClassification(architecture, configuration={**FAST, **options}, context=context)
    return adapter, adapter.train(data, output, **adapter.configuration)


def weights(adapter: tc.TorchvisionClassification) -> dict[str, torch.Tensor]:
    assert adapter.model is not None
    return adapter.model.state_dict()


def assert_same_weights(first: tc.TorchvisionClassification, second: tc.TorchvisionClassification) -> None:
    for (name, expected), actual in zip(weights(first).items(), weights(second).values(), strict=True):
        assert torch.allclose(expected.float(), actual.float(), atol=1e-5), name


def options(**values: Any) -> tc.ClassificationOptions:
    return tc.ClassificationOptions(**values)


# ---- data sets ------------------------------------------------------------------------------------


def test_the_digits_sample_is_a_stratified_image_folder_written_once(digits: Path) -> None:
    labels, counts = read_image_folder(digits)
    assert labels == DIGITS
    assert counts == {"train": 1437, "validation": 360}
    assert sample_writer("digits") is write_digits
    image = Image.open(next((digits / "train" / "3").iterdir()))
    assert (image.mode, image.size) == ("L", (8, 8))
    before = {path: path.stat().st_mtime_ns for path in digits.rglob("*")}
    summary = write_digits(digits)
    assert (summary["train_images"], summary["validation_images"]) == (1437, 360)
    assert {path: path.stat().st_mtime_ns for path in digits.rglob("*")} == before


def test_an_image_folder_read_for_a_label_subset_counts_those_labels_only(small_digits: Path) -> None:
    assert read_image_folder(small_digits, ["7", "2"]) == (["2", "7"], {"train": 16, "validation": 6})
    with pytest.raises(DatasetError) as caught:
        read_image_folder(small_digits, ["2", "cat"])
    assert set(caught.value.fields) == {"configuration.labels"}
    assert "cat" in caught.value.fields["configuration.labels"] and "0, 1, 2" in caught.value.fields["configuration.labels"]


def test_a_label_subset_leaves_the_other_labels_out_or_makes_them_one_negative_class(small_digits: Path) -> None:
    check = tc.TorchvisionClassification.check_dataset
    assert check(small_digits, {"labels": ["5", "1"]}) == ["1", "5"]
    assert check(small_digits, {"labels": ["5", "1"], "include_negatives": True}) == ["1", "5", tc.NEGATIVE_LABEL]
    assert check(small_digits, {"labels": None, "include_negatives": True}) == DIGITS
    plan = tc.plan_labels(small_digits, ["1", "5"], include_negatives=True)
    assert plan.class_index["1"] == 0 and plan.class_index["5"] == 1 and plan.class_index["0"] == plan.class_index["9"] == 2
    assert plan.counts == {"train": 80, "validation": 30}
    assert tc.plan_labels(small_digits, ["1", "5"], include_negatives=False).counts == {"train": 16, "validation": 6}


@pytest.mark.parametrize(
    ("labels", "include_negatives", "problem"),
    [(["1", "eleven"], False, "eleven"), (["1"], False, "at least two"), (["1", "1"], False, "at least two")],
)
def test_a_bad_label_subset_is_refused_naming_configuration_labels(small_digits: Path, labels: list[str], include_negatives: bool,
                                                                     problem: str) -> None:
    with pytest.raises(DatasetError) as caught:
        tc.TorchvisionClassification.check_dataset(small_digits, {"labels": labels, "include_negatives": include_negatives})
    assert set(caught.value.fields) == {"configuration.labels"} and problem in caught.value.message + caught.value.fields["configuration.labels"]


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


# ---- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configuration", "field"),
    [
        ({"epoch": 3}, ("epoch",)),
        ({"epochs": 0}, ("epochs",)),
        ({"max_steps": 0}, ("max_steps",)),
        ({"learning_rate": 0}, ("learning_rate",)),
        ({"optimizer": "adamax2"}, ("optimizer",)),
        ({"optimizer": "SparseAdam"}, ("optimizer",)),
        ({"optimizer": "muon"}, ("optimizer",)),
        ({"optimizer_args": {"nesterow": True}}, ("optimizer_args", "nesterow")),
        ({"optimizer": "adam", "optimizer_args": {"momentum": 0.9}}, ("optimizer_args", "momentum")),
        ({"optimizer_args": {"lr": 0.1}}, ("optimizer_args", "lr")),
        ({"optimizer_args": {"momentum": -0.5}}, ("optimizer_args",)),
        ({"optimizer": "adamw", "optimizer_args": {"betas": [0.9, 1.5]}}, ("optimizer_args",)),
        ({"optimizer_args": {"nesterov": True, "momentum": 0}}, ("optimizer_args",)),
        ({"optimizer": "adagrad", "momentum": 0.9}, ("momentum",)),
        ({"optimizer": "rprop", "weight_decay": 0.01}, ("weight_decay",)),
        ({"optimizer": "adam", "momentum": 0.8, "optimizer_args": {"betas": [0.8, 0.99]}}, ("optimizer_args", "betas")),
        ({"weight_decay": 0.01, "optimizer_args": {"weight_decay": 0.01}}, ("optimizer_args", "weight_decay")),
        ({"lr_schedule": "linear"}, ("lr_schedule",)),
        ({"lr_min": 0.5, "learning_rate": 0.1}, ("lr_min",)),
        ({"lr_factor": 1}, ("lr_factor",)),
        ({"input_size": 8}, ("input_size",)),
        ({"input_size": 32, "val_crop_height": 40}, ("val_crop_height",)),
        ({"val_crop_width": 17}, ("val_crop_width",)),
        ({"randaugment_magnitude": 31}, ("randaugment_magnitude",)),
        ({"randaugment_disable": ["Rotate", "Blur"]}, ("randaugment_disable",)),
        ({"randaugment_color": False, "randaugment_disable": ["Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"]},
         ("randaugment_disable",)),
        ({"preprocess": "gamma"}, ("preprocess",)),
        ({"stretch_low": 60, "stretch_high": 40}, ("stretch_high",)),
        ({"batch_size": 5000}, ("batch_size",)),
        ({"label_smoothing": 1.5}, ("label_smoothing",)),
        ({"gradient_clip_norm": 0}, ("gradient_clip_norm",)),
        ({"labels": []}, ("labels",)),
        ({"max_hours": 0}, ("max_hours",)),
    ],
)
def test_bad_options_are_refused_naming_the_field(configuration: dict[str, Any], field: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        tc.TorchvisionClassification.validate_configuration(configuration)
    assert [error["loc"] for error in caught.value.errors()] == [field]


def test_refusals_say_what_is_allowed() -> None:
    def message(configuration: dict[str, Any]) -> str:
        with pytest.raises(ValidationError) as caught:
            tc.TorchvisionClassification.validate_configuration(configuration)
        return str(caught.value.errors()[0]["msg"])

    assert "AdamW" in message({"optimizer": "adamax2"}) and "RMSprop" in message({"optimizer": "adamax2"})
    assert "momentum, dampening, weight_decay, nesterov" in message({"optimizer_args": {"nesterow": True}})
    assert "learning_rate" in message({"optimizer_args": {"lr": 0.1}})
    assert "Invalid momentum value" in message({"optimizer_args": {"momentum": -0.5}})
    assert "Equalize" in message({"randaugment_disable": ["Blur"]})


@pytest.mark.parametrize("name", sorted(cls.__name__ for cls in tc.OPTIMIZERS.values() if cls.__name__ not in tc.UNSUPPORTED_OPTIMIZERS))
def test_every_torch_optimizer_is_accepted_by_name_in_any_case_and_trains(name: str) -> None:
    for spelling in (name, name.lower(), name.upper()):
        assert tc.TorchvisionClassification.validate_configuration({"optimizer": spelling})["optimizer"] == name
    model = nn_model()
    optimizer = tc.make_optimizer(list(model.parameters()), options(optimizer=name))
    assert type(optimizer).__name__ == name
    before = model.weight.detach().clone()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = model(torch.ones(4, 3)).square().mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    assert not torch.equal(before, model.weight)


def nn_model() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2)


def test_optimizer_args_win_over_the_shortcuts_which_win_over_the_recipe() -> None:
    assert tc.optimizer_arguments(options()) == {"weight_decay": 5e-4, "momentum": 0.9, "nesterov": True}
    assert tc.optimizer_arguments(options(optimizer="sgd", momentum=0.0)) == {"weight_decay": 5e-4, "momentum": 0.0, "nesterov": False}
    assert tc.optimizer_arguments(options(optimizer_args={"momentum": 0.5, "dampening": 0.1})) == {
        "weight_decay": 5e-4, "momentum": 0.5, "dampening": 0.1, "nesterov": False}
    assert tc.optimizer_arguments(options(optimizer="Adam", momentum=0.8, weight_decay=0.0)) == {"weight_decay": 0.0, "betas": (0.8, 0.999)}
    assert tc.optimizer_arguments(options(optimizer="adamw", optimizer_args={"betas": [0.5, 0.9], "amsgrad": True})) == {
        "weight_decay": 5e-4, "betas": (0.5, 0.9), "amsgrad": True}
    assert tc.optimizer_arguments(options(optimizer="RMSprop", momentum=0.3, optimizer_args={"alpha": 0.9})) == {
        "weight_decay": 5e-4, "momentum": 0.3, "alpha": 0.9}
    assert tc.optimizer_arguments(options(optimizer="rprop")) == {}
    assert tc.optimizer_arguments(options(optimizer="adagrad")) == {"weight_decay": 5e-4}


def test_the_learning_rate_schedules_are_functions_of_the_step() -> None:
    def rates(**values: Any) -> list[float]:
        chosen = options(learning_rate=1.0, warmup_steps=4, **values)
        return [tc.learning_rate_at(step, 100, 4, chosen) for step in range(100)]

    for schedule in ("constant", "step", "cosine", "plateau"):
        assert rates(lr_schedule=schedule)[:5] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert set(rates(lr_schedule="constant")[4:]) == {1.0}
    step = rates(lr_schedule="step", lr_step_size=32, lr_gamma=0.5)
    assert step[4:36] == [1.0] * 32 and step[36:68] == [0.5] * 32 and step[68:] == [0.25] * 32
    assert rates(lr_schedule="step", lr_gamma=0.1)[99] == pytest.approx(0.01)  # two reductions, at thirds of the 96 steps
    cosine = rates(lr_schedule="cosine", lr_min=0.1)
    assert all(later <= earlier for earlier, later in zip(cosine[4:], cosine[5:], strict=False))
    assert cosine[52] == pytest.approx(0.55) and cosine[99] == pytest.approx(0.1, abs=1e-3)
    plateau = options(learning_rate=1.0, lr_schedule="plateau", lr_min=0.05)
    assert tc.learning_rate_at(50, 100, 0, plateau, plateau_scale=0.1) == pytest.approx(0.1)
    assert tc.learning_rate_at(50, 100, 0, plateau, plateau_scale=0.01) == 0.05
    # By default the warm-up lasts one epoch, or a fifth of training when that is shorter.
    assert tc.resolved_warmup_steps(options(), 184, 23) == 23 and tc.resolved_warmup_steps(options(), 50, 23) == 10


def test_reduce_on_plateau_waits_for_patience_evaluations_without_a_better_loss() -> None:
    plateau = tc.Plateau()
    for loss in (1.0, 0.9, 0.95, 0.9, 0.91, 0.92, 0.8, 0.85):
        plateau.update(loss, patience=2, factor=0.5)
    assert plateau.scale == 0.5 and plateau.best_loss == 0.8 and plateau.stale == 1


def test_every_option_is_described() -> None:
    properties = tc.TorchvisionClassification.options_schema()["properties"]
    assert {name for name, schema in properties.items() if not schema.get("description")} == set()


# ---- augmentation and preprocessing ---------------------------------------------------------------


def _batch(count: int = 64, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_randaugment_without_colour_never_picks_a_colour_operation_and_leaves_out_disabled_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    picked: list[str] = []
    real_apply = tc._apply_op

    def spy(images: torch.Tensor, name: str, *args: Any, **kwargs: Any) -> torch.Tensor:
        picked.extend([name] * len(images))
        return real_apply(images, name, *args, **kwargs)

    monkeypatch.setattr(tc, "_apply_op", spy)
    ops = tc.randaugment_ops(color=False, disable=["Rotate"])
    assert ops == ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY")
    augment = tc.BatchRandAugment(ops, num_ops=2, magnitude=9)
    out = augment(_batch(), torch.Generator().manual_seed(0))

    assert out.dtype == torch.uint8 and out.shape == (64, 3, 16, 16)
    assert len(picked) == 128 and set(picked) == set(ops)
    assert tc.randaugment_ops(color=True, disable=[]) == tc.RANDAUGMENT_OPS and len(tc.RANDAUGMENT_OPS) == 14
    assert tc.ClassificationOptions(randaugment_disable=["rotate", "EQUALIZE"]).randaugment_disable == ["Rotate", "Equalize"]


def test_randaugment_draws_per_image_from_its_generator_only() -> None:
    augment = tc.BatchRandAugment(tc.RANDAUGMENT_OPS, num_ops=2, magnitude=15)
    images = _batch()
    first = augment(images, torch.Generator().manual_seed(7))
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(first, augment(images, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, augment(images, torch.Generator().manual_seed(8)))
    changed = (first != images).flatten(1).any(dim=1)
    assert 0 < int(changed.sum()) < 64  # each image drew its own operations; Identity twice leaves some as they were


def test_random_crops_and_flips_are_batched_and_seeded() -> None:
    images = torch.arange(2 * 3 * 20 * 20, dtype=torch.float32).reshape(2, 3, 20, 20)
    crops = tc.random_resized_crop(images, (16, 12), 0.25, True, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 3, 16, 12)
    assert torch.equal(crops, tc.random_resized_crop(images, (16, 12), 0.25, True, torch.Generator().manual_seed(0)))
    # On a left-to-right ramp, a crop is a ramp too: rising, or falling when it was mirrored.
    ramp = torch.arange(20.0).expand(16, 3, 20, 20).contiguous()
    steps = tc.random_resized_crop(ramp, (10, 10), 0.25, True, torch.Generator().manual_seed(0)).diff(dim=-1)
    rising, falling = (steps >= 0).flatten(1).all(dim=1), (steps <= 0).flatten(1).all(dim=1)
    assert bool((rising | falling).all()) and bool(rising.any()) and bool(falling.any())
    flipped = tc.random_flip(images, torch.Generator().manual_seed(3))
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images, strict=True))
    assert tc.center_crop(images, (16, 12)).shape == (2, 3, 16, 12)
    assert torch.equal(tc.center_crop(images, (16, 12))[0, 0, 0], images[0, 0, 2, 4:16])


def test_linear_stretch_and_clahe_change_pixels_deterministically() -> None:
    grey = np.tile(np.linspace(60, 120, 16, dtype=np.uint8), (16, 1))
    colour = np.stack([grey, grey // 2 + 10, 255 - grey], axis=-1)
    image = Image.fromarray(colour)
    none = tc._Pixels(16, tc.Preprocessing())(image)
    stretched = tc._Pixels(16, tc.Preprocessing("linear_stretch"))(image)
    assert [int(stretched[c].min()) for c in range(3)] == [0, 0, 0] and [int(stretched[c].max()) for c in range(3)] == [255] * 3
    percentile = tc._Pixels(16, tc.Preprocessing("linear_stretch", stretch_low=10, stretch_high=90))(image)
    assert int((percentile == 0).sum()) > int((stretched == 0).sum())
    clahe = tc.Preprocessing("clahe", clahe_clip_limit=4.0, clahe_tile_grid=2)
    equalised = tc._Pixels(16, clahe)(image)
    assert not torch.equal(equalised, none) and torch.equal(equalised, tc._Pixels(16, clahe)(image))
    grey_result = clahe(np.repeat(grey[..., None], 3, axis=2))
    assert (grey_result == grey_result[..., :1]).all() and not np.array_equal(grey_result[..., 0], grey)
    flat = np.full((4, 4, 3), 77, dtype=np.uint8)
    assert np.array_equal(tc.Preprocessing("linear_stretch")(flat), flat)


# ---- models -------------------------------------------------------------------------------------


def test_the_adapter_serves_every_torchvision_classification_model() -> None:
    names = tc.TorchvisionClassification.architectures
    assert {"resnet18", "vit_b_16", "mobilenet_v3_small"} <= set(names)
    assert not [name for name in names if "quantized" in name or name.startswith(("r3d", "fcn", "raft", "fasterrcnn"))]


def test_an_architecture_that_cannot_take_the_image_size_is_refused_naming_the_option() -> None:
    with pytest.raises(ConfigError) as caught:
        tc.build_model("alexnet", 10, 16)
    assert set(caught.value.fields) == {"input_size"}
    with pytest.raises(ConfigError) as caught:
        tc.build_model("vit_b_16", 10, 32, (32, 16))
    assert set(caught.value.fields) == {"val_crop_height", "val_crop_width"}
    with pytest.raises(AdapterError):
        tc.build_model("no_such_net", 10, 32)


# ---- training -------------------------------------------------------------------------------------


def test_training_reports_progress_metrics_and_checkpoints_and_the_model_round_trips(
    small_digits: Path, tmp_path: Path, no_network: list[str]
) -> None:
    context = NullContext()
    adapter, metrics = train(small_digits, tmp_path / "out", context, eval_every_steps=4)

    assert metrics["steps"] == 10.0 and metrics["epochs"] == 2.0 and metrics["train_samples_per_s"] > 0
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["train_loss"] > 0 and metrics["val_loss"] > 0
    assert {"val_precision", "val_recall", "val_f1", "train_accuracy", "learning_rate"} <= set(metrics)
    assert [percent for percent, _ in events(context, "progress")] == [40.0, 80.0, 100.0]
    assert all(message.startswith(f"step {s}/10 ") and "val f1" in message for (_, message), s in zip(events(context, "progress"), (4, 8, 10),
                                                                                                       strict=True))
    reported = {(figure, legend, x) for figure, legend, x, _ in events(context, "metric")}
    figures = [("loss", "train"), ("loss", "val"), ("accuracy", "train"), ("accuracy", "val"), ("precision", "val"), ("recall", "val"),
               ("f1", "val"), ("learning_rate", "train")]
    assert reported == {(figure, legend, x) for figure, legend in figures for x in (4, 8, 10)}
    rates = [y for figure, _, x, y in events(context, "metric") if figure == "learning_rate"]
    assert rates == pytest.approx([tc.learning_rate_at(x - 1, 10, 0, tc.ClassificationOptions(**FAST)) for x in (4, 8, 10)])

    checkpoints = tmp_path / "out" / "checkpoints"
    written = [(Path(path).name, step) for path, step, _ in events(context, "checkpoint")]
    assert [entry for entry in written if entry[0] == "last.pt"] == [("last.pt", 4), ("last.pt", 8), ("last.pt", 10)]
    best = [step for name, step in written if name == "best.pt"]
    assert best[0] == 4 and best == sorted(best)
    saved_best = torch.load(checkpoints / "best.pt", weights_only=True)
    accuracies = {x: y for figure, legend, x, y in events(context, "metric") if (figure, legend) == ("accuracy", "val")}
    assert saved_best["step"] == best[-1] and saved_best["best"][0] == accuracies[best[-1]] == max(accuracies.values())
    assert torch.load(checkpoints / "last.pt", weights_only=True)["step"] == 10
    assert not list(checkpoints.glob(".*partial"))

    adapter.save(tmp_path / "model")
    loaded = tc.TorchvisionClassification("resnet18")
    loaded.load(tmp_path / "model")
    assert loaded.labels == DIGITS
    images = [Image.open(next((small_digits / "validation" / "4").iterdir())), np.zeros((8, 8), dtype=np.uint8)]
    predictions = loaded.predict(images)
    assert predictions == adapter.predict(images)
    assert all(p["label"] in loaded.labels and 0.0 < p["score"] <= 1.0 for p in predictions)


def test_a_stop_request_ends_training_with_a_checkpoint_at_its_step(small_digits: Path, tmp_path: Path, no_network: list[str]) -> None:
    # should_stop() is asked before every step: the eighth question comes before step 8, in the second epoch.
    context = StopAfter(calls=7)
    _, metrics = train(small_digits, tmp_path / "out", context, epochs=5)

    assert metrics["stopped"] == 1.0 and metrics["steps"] == 7.0
    assert [(Path(path).name, step) for path, step, _ in events(context, "checkpoint")] == [("last.pt", 5), ("best.pt", 5), ("last.pt", 7)]
    assert torch.load(tmp_path / "out" / "checkpoints" / "last.pt", weights_only=True)["step"] == 7


def test_a_spent_time_budget_ends_training_after_evaluating_and_checkpointing(small_digits: Path, tmp_path: Path,
                                                                              no_network: list[str]) -> None:
    # A budget of a few microseconds is spent by the first step, whatever the machine.
    context = NullContext()
    _, metrics = train(small_digits, tmp_path / "out", context, max_hours=1e-9)

    assert metrics["time_limited"] == 1.0 and metrics["steps"] == 1.0 and "val_f1" in metrics
    assert [(Path(path).name, step) for path, step, _ in events(context, "checkpoint")] == [("last.pt", 1), ("best.pt", 1)]


def test_a_run_resumed_mid_epoch_ends_with_the_weights_of_an_uninterrupted_one(small_digits: Path, tmp_path: Path,
                                                                              no_network: list[str]) -> None:
    # Every augmentation on, so that the per-step seeding is what makes the two runs agree.
    augmented = {"epochs": 2, "randaugment": True, "random_crop": True, "horizontal_flip": True, "input_size": 20,
                 "val_crop_height": 16, "val_crop_width": 16, "lr_schedule": "step", "lr_step_size": 3}
    whole, whole_metrics = train(small_digits, tmp_path / "whole", NullContext(), **augmented)
    first, _ = train(small_digits, tmp_path / "first", StopAfter(calls=7), **augmented)
    checkpoint = tmp_path / "first" / "checkpoints" / "last.pt"
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == 7  # two batches into the second epoch

    context = NullContext()
    context.resume_checkpoint = checkpoint
    resumed, metrics = train(small_digits, tmp_path / "second", context, **augmented)

    assert ("resumed from checkpoint at step 7",) in events(context, "log")
    assert min(x for _, _, x, _ in events(context, "metric")) == 10 and metrics["steps"] == 10.0
    assert [step for path, step, _ in events(context, "checkpoint") if path.endswith("last.pt")] == [10]
    assert_same_weights(whole, resumed)
    assert metrics["val_accuracy"] == whole_metrics["val_accuracy"]

    # Resumed with no step left, the model holds exactly the checkpoint's weights.
    done = NullContext()
    done.resume_checkpoint = checkpoint
    finished, _ = train(small_digits, tmp_path / "third", done, **{**augmented, "max_steps": 7})
    assert all(torch.equal(weights(finished)[key], value) for key, value in saved["model"].items())


def test_the_plateau_schedule_keeps_its_state_in_the_checkpoint(small_digits: Path, tmp_path: Path, no_network: list[str]) -> None:
    context = NullContext()
    train(small_digits, tmp_path / "out", context, max_steps=4, eval_every_steps=1, lr_schedule="plateau", lr_patience=0,
          lr_factor=0.5)
    losses = [y for figure, legend, _, y in events(context, "metric") if (figure, legend) == ("loss", "val")]
    rates = [y for figure, _, _, y in events(context, "metric") if figure == "learning_rate"]
    expected, scale, best = [], 1.0, math.inf
    for loss in losses:
        expected.append(0.02 * scale)
        if loss < best * (1 - 1e-4):
            best = loss
        else:
            scale *= 0.5
    assert rates == pytest.approx(expected)
    saved = torch.load(tmp_path / "out" / "checkpoints" / "last.pt", weights_only=True)
    assert saved["plateau"]["best_loss"] == min(losses) and saved["plateau"]["scale"] == scale


def test_a_checkpoint_of_another_model_is_not_resumed(small_digits: Path, tmp_path: Path, no_network: list[str]) -> None:
    train(small_digits, tmp_path / "first", StopAfter(calls=1))
    context = NullContext()
    context.resume_checkpoint = tmp_path / "first" / "checkpoints" / "last.pt"
    with pytest.raises(AdapterError, match="resnet18"):
        train(small_digits, tmp_path / "second", context, architecture="resnet34")
    with pytest.raises(AdapterError, match="labels"):
        train(small_digits, tmp_path / "third", context, labels=["1", "2"])


def test_data_sets_too_large_for_memory_are_streamed_from_disk_with_the_same_batches(
    small_digits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    preloaded, _ = train(small_digits, tmp_path / "preloaded", NullContext(), max_steps=3, horizontal_flip=True)
    monkeypatch.setattr(tc, "PRELOAD_LIMIT_BYTES", 0)
    streamed, metrics = train(small_digits, tmp_path / "streamed", NullContext(), max_steps=3, horizontal_flip=True)
    assert metrics["steps"] == 3.0 and 0.0 <= metrics["val_accuracy"] <= 1.0
    assert_same_weights(preloaded, streamed)


def test_a_label_subset_trains_those_labels_and_negatives_become_one_class(small_digits: Path, tmp_path: Path,
                                                                          no_network: list[str]) -> None:
    only, _ = train(small_digits, tmp_path / "only", NullContext(), labels=["7", "1", "4"], max_steps=1)
    assert only.labels == ["1", "4", "7"] and only.model is not None and only.model.fc.out_features == 3
    context = NullContext()
    negatives, _ = train(small_digits, tmp_path / "negatives", context, labels=["7", "1", "4"], include_negatives=True, max_steps=1)
    assert negatives.labels == ["1", "4", "7", tc.NEGATIVE_LABEL] and negatives.model is not None
    assert negatives.model.fc.out_features == 4
    assert any("4 classes, 80 training and 30 validation images" in message for (message,) in events(context, "log"))
    assert {p["label"] for p in negatives.predict([np.zeros((8, 8), dtype=np.uint8)])} <= set(negatives.labels)


def test_preprocessing_and_crop_are_saved_with_the_model_and_used_by_predict(small_digits: Path, tmp_path: Path,
                                                                               no_network: list[str]) -> None:
    adapter, _ = train(small_digits, tmp_path / "out", NullContext(), max_steps=2, preprocess="clahe", clahe_tile_grid=4,
                       input_size=24, val_crop_height=16, val_crop_width=20, random_crop=True)
    adapter.save(tmp_path / "model")
    saved = torch.load(tmp_path / "model" / tc.MODEL_FILE, weights_only=True)
    assert saved["preprocess"]["kind"] == "clahe" and saved["preprocess"]["clahe_tile_grid"] == 4 and saved["crop"] == [16, 20]

    loaded = tc.TorchvisionClassification("resnet18")
    loaded.load(tmp_path / "model")
    assert loaded.preprocessing == tc.Preprocessing("clahe", clahe_tile_grid=4) and loaded.crop == (16, 20)
    images = [Image.open(path) for path in sorted((small_digits / "validation" / "8").iterdir())]
    predictions = loaded.predict(images)
    assert predictions == adapter.predict(images)
    loaded.preprocessing = tc.Preprocessing()
    assert [p["score"] for p in loaded.predict(images)] != pytest.approx([p["score"] for p in predictions])


def test_fine_tuning_starts_from_a_saved_model_with_a_new_head_when_the_labels_differ(small_digits: Path, tmp_path: Path,
                                                                                      no_network: list[str]) -> None:
    base, _ = train(small_digits, tmp_path / "base", NullContext(), max_steps=2)
    base.save(tmp_path / "base-model")
    # One step at a negligible rate: everything copied keeps the base model's weights.
    tiny = {"max_steps": 1, "learning_rate": 1e-12, "weight_decay": 0.0}

    same = NullContext()
    same.base_model = tmp_path / "base-model"
    kept, _ = train(small_digits, tmp_path / "kept", same, **tiny)
    assert torch.allclose(weights(kept)["fc.weight"], weights(base)["fc.weight"], atol=1e-9)
    assert (f"fine-tuning from {tmp_path / 'base-model'}",) in events(same, "log")

    other = NullContext()
    other.base_model = tmp_path / "base-model"
    tuned, _ = train(small_digits, tmp_path / "tuned", other, labels=["0", "1", "2", "3", "4", "5", "6", "7", "8"],
                     include_negatives=True, **tiny)
    assert tuned.labels[-1] == tc.NEGATIVE_LABEL and len(tuned.labels) == 10
    assert torch.allclose(weights(tuned)["conv1.weight"], weights(base)["conv1.weight"], atol=1e-9)
    assert not torch.allclose(weights(tuned)["fc.weight"], weights(base)["fc.weight"])  # same shape, other labels: a new head
    assert any(message.startswith("fine-tuning from") and "freshly initialised: fc" in message for (message,) in events(other, "log"))
    assert tuned.mean == base.mean and tuned.std == base.std


def test_training_with_every_option_group_on_runs_and_reports(small_digits: Path, tmp_path: Path, no_network: list[str]) -> None:
    context = NullContext()
    _, metrics = train(small_digits, tmp_path / "out", context, max_steps=3, optimizer="rmsprop", optimizer_args={"alpha": 0.9},
                       momentum=0.5, gradient_clip_norm=1.0, label_smoothing=0.1, lr_schedule="cosine", lr_min=0.001,
                       warmup_steps=1, randaugment=True, randaugment_color=False, preprocess="linear_stretch", stretch_low=2,
                       stretch_high=98, checkpoint_every_steps=1, eval_every_steps=3)
    assert metrics["steps"] == 3.0
    assert [step for path, step, _ in events(context, "checkpoint") if path.endswith("last.pt")] == [1, 2, 3]
    assert any("RMSprop {'weight_decay': 0.0005, 'momentum': 0.5, 'alpha': 0.9}" in message for (message,) in events(context, "log"))


def test_lbfgs_trains_through_a_closure(small_digits: Path, tmp_path: Path, no_network: list[str]) -> None:
    _, metrics = train(small_digits, tmp_path / "out", NullContext(), max_steps=1, optimizer="lbfgs", learning_rate=0.1,
                       optimizer_args={"max_iter": 2})
    assert metrics["steps"] == 1.0 and math.isfinite(metrics["train_loss"])


def test_training_without_a_data_set_is_refused(tmp_path: Path) -> None:
    adapter = tc.TorchvisionClassification("resnet18", configuration=FAST)
    with pytest.raises(DatasetError):
        adapter.train(None, tmp_path)


# ---- through the real pipeline -------------------------------------------------------------------


@pytest.mark.stack
def test_a_classification_training_over_http_is_validated_then_succeeds_with_metrics_and_checkpoints(
    stack: Any, small_digits: Path
) -> None:
    data = small_digits  # pytest's temporary directories are data roots of test stacks
    model = stack.client.create_model("digits", "resnet18", configuration={**FAST, "epochs": 1})
    for configuration, field in (({"labels": ["1", "eleven"]}, "configuration.labels"),
                                 ({"optimizer_args": {"nesterow": True}}, "configuration.optimizer_args.nesterow"),
                                 ({"optimizer": "sparseadam"}, "configuration.optimizer")):
        with pytest.raises(ApiError) as caught:
            stack.client.train(model["id"], dataset=str(data), configuration=configuration)
        assert caught.value.status == 422 and field in caught.value.fields, caught.value
    assert stack.client.list_executions() == []

    execution = stack.client.train(model["id"], dataset=str(data))
    final = stack.client.wait(execution["id"], timeout_s=300)

    assert final["status"] == "success", final
    recorded = {(m["figure"], m["legend"], m["x"]) for m in stack.client.metrics(execution["id"])}
    assert {("f1", "val", 5), ("precision", "val", 5), ("recall", "val", 5), ("learning_rate", "train", 5)} <= recorded
    checkpoints = {(Path(a["path"]).name, a["step"]) for a in stack.client.artifacts(execution["id"]) if a["kind"] == "checkpoint"}
    assert {("last.pt", 5), ("best.pt", 5)} <= checkpoints
    trained = stack.client.get_model(model["id"])
    assert trained["status"] == "trained" and trained["labels"] == DIGITS and "val_f1" in trained["metrics"]
