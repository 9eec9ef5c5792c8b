"""The torchvision classification adapter and the image-folder data sets it reads (its options and
augmentation: test_classification_options.py).

Training tests use a few images per label copied from the bundled digits sample, at 16 pixels,
so that each training takes a second or two on a small CPU.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.adapter_support import StopAfter, events, first_images
from trainfaas.adapters import NullContext, vision_data
from trainfaas.adapters import torchvision_classification as tc
from trainfaas.adapters.classification_images import NEGATIVE_LABEL
from trainfaas.adapters.datasets import read_image_folder, sample_writer, write_digits
from trainfaas.adapters.vision_training import MODEL_FILE
from trainfaas.services.core.errors import AdapterError, ConfigError, DatasetError
from trainfaas.services.sdk.client import ApiError

# Five steps an epoch (80 training images in batches of 16), no warm-up: tiny and deterministic.
FAST = {"epochs": 2, "batch_size": 16, "input_size": 16, "warmup_steps": 0}
DIGITS = [str(digit) for digit in range(10)]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(write_digits(tmp_path_factory.mktemp("sample") / "digits")["path"])


@pytest.fixture(scope="module")
def small_digits(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training and 3 validation images per label: 5 steps of 16 images per epoch."""
    return first_images(digits, tmp_path_factory.mktemp("small") / "digits")


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
    assert check(small_digits, {"labels": ["5", "1"], "include_negatives": True}) == ["1", "5", NEGATIVE_LABEL]
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
    monkeypatch.setattr(vision_data, "PRELOAD_LIMIT_BYTES", 0)
    streamed, metrics = train(small_digits, tmp_path / "streamed", NullContext(), max_steps=3, horizontal_flip=True)
    assert metrics["steps"] == 3.0 and 0.0 <= metrics["val_accuracy"] <= 1.0
    assert_same_weights(preloaded, streamed)


def test_a_label_subset_trains_those_labels_and_negatives_become_one_class(small_digits: Path, tmp_path: Path,
                                                                          no_network: list[str]) -> None:
    only, _ = train(small_digits, tmp_path / "only", NullContext(), labels=["7", "1", "4"], max_steps=1)
    assert only.labels == ["1", "4", "7"] and only.model is not None and only.model.fc.out_features == 3
    context = NullContext()
    negatives, _ = train(small_digits, tmp_path / "negatives", context, labels=["7", "1", "4"], include_negatives=True, max_steps=1)
    assert negatives.labels == ["1", "4", "7", NEGATIVE_LABEL] and negatives.model is not None
    assert negatives.model.fc.out_features == 4
    assert any("4 classes, 80 training and 30 validation images" in message for (message,) in events(context, "log"))
    assert {p["label"] for p in negatives.predict([np.zeros((8, 8), dtype=np.uint8)])} <= set(negatives.labels)


def test_preprocessing_and_crop_are_saved_with_the_model_and_used_by_predict(small_digits: Path, tmp_path: Path,
                                                                               no_network: list[str]) -> None:
    adapter, _ = train(small_digits, tmp_path / "out", NullContext(), max_steps=2, preprocess="clahe", clahe_tile_grid=4,
                       input_size=24, val_crop_height=16, val_crop_width=20, random_crop=True)
    adapter.save(tmp_path / "model")
    saved = torch.load(tmp_path / "model" / MODEL_FILE, weights_only=True)
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
    assert tuned.labels[-1] == NEGATIVE_LABEL and len(tuned.labels) == 10
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
    kept = stack.client.checkpoints(execution["id"])  # each a file of its own: step-<n>.pt
    assert any(c["step"] == 5 and c["is_last"] for c in kept) and sum(c["is_best"] for c in kept) == 1
    trained = stack.client.get_model(model["id"])
    assert trained["status"] == "trained" and trained["labels"] == DIGITS and "val_f1" in trained["metrics"]
