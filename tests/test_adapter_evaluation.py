"""Each built-in adapter's ``evaluate`` on a tiny model trained on a small generated data set, and
the scores it reports (trained the way each adapter's own tests train, in seconds on a CPU)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.adapter_support import first_images
from trainfaas.adapters import AdapterError, ConfigError, ModelAdapter, NullContext, yolo
from trainfaas.adapters import torchvision_classification as tc
from trainfaas.adapters import torchvision_segmentation as ts
from trainfaas.adapters.datasets import write_digits
from trainfaas.adapters.evaluation import classification_scores
from trainfaas.adapters.shapes import write_shapes
from trainfaas.adapters.text_samples import write_ner, write_text
from trainfaas.adapters.transformers_text import TextClassification, TokenClassification

DIGITS = [str(digit) for digit in range(10)]


def assert_classification(scores: dict[str, Any], labels: list[str], samples: int) -> None:
    assert 0.0 <= scores["accuracy"] <= 1.0 and scores["samples"] == samples
    assert scores["labels"] == labels and set(scores["per_class"]) == set(labels)
    matrix = np.array(scores["confusion_matrix"])
    assert matrix.shape == (len(labels), len(labels)) and int(matrix.sum()) == samples
    assert scores["accuracy"] == pytest.approx(np.trace(matrix) / samples)
    for figures in scores["per_class"].values():
        assert all(0.0 <= figures[key] <= 1.0 for key in ("precision", "recall", "f1"))


def test_classification_scores_come_from_the_confusion_matrix() -> None:
    scores = classification_scores(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), ["a", "b", "c"])
    assert scores["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert scores["accuracy"] == pytest.approx(3 / 5)
    assert scores["per_class"]["b"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8), "support": 2}
    assert scores["per_class"]["c"]["f1"] == 0.0 and scores["per_class"]["c"]["support"] == 1
    assert scores["f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_an_adapter_without_evaluate_says_so(tmp_path: Path) -> None:
    class Bare(ModelAdapter):
        architectures = ("bare",)

    with pytest.raises(AdapterError, match="implements no evaluate"):
        Bare("bare").evaluate(tmp_path)


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    digits = Path(write_digits(tmp_path_factory.mktemp("sample") / "digits")["path"])
    return first_images(digits, tmp_path_factory.mktemp("small") / "digits")


def test_a_classifier_evaluates_with_accuracy_per_class_scores_and_its_confusion_matrix(small_digits: Path, tmp_path: Path) -> None:
    trainer = tc.TorchvisionClassification("resnet18", configuration={"epochs": 1, "batch_size": 16, "input_size": 16, "warmup_steps": 0})
    trainer.train(small_digits, tmp_path, **trainer.configuration)
    trainer.save(tmp_path / "model")
    context = NullContext()
    adapter = tc.TorchvisionClassification("resnet18", context=context)
    adapter.load(tmp_path / "model")
    scores = adapter.evaluate(small_digits)
    assert_classification(scores, DIGITS, 30)
    assert adapter.evaluate(small_digits, subset="train")["samples"] == 80
    assert any(kind == "progress" for kind, _ in context.events)
    with pytest.raises(ConfigError, match="subset"):
        adapter.evaluate(small_digits, subset="../etc")
    image = next((small_digits / "validation" / "3").iterdir())
    from PIL import Image

    prediction = adapter.predict([Image.open(image)], top_k=3)[0]
    assert prediction["label"] in DIGITS and len(prediction["scores"]) == 3
    assert prediction["scores"][0] == {"label": prediction["label"], "score": prediction["score"]}


# ---- segmentation, detection, text and token classification -----------------------------------------


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(write_shapes(tmp_path_factory.mktemp("sample") / "shapes", train_images=16, validation_images=8, image_size=64)["path"])


def test_a_segmentation_model_evaluates_with_miou_and_per_class_iou(shapes: Path, tmp_path: Path) -> None:
    trainer = ts.TorchvisionSegmentation("lraspp_mobilenet_v3_large", configuration={"epochs": 1, "batch_size": 8, "input_size": 32,
                                                                                     "warmup_steps": 0})
    trainer.train(shapes, tmp_path, **trainer.configuration)
    trainer.save(tmp_path / "model")
    adapter = ts.TorchvisionSegmentation("lraspp_mobilenet_v3_large")
    adapter.load(tmp_path / "model")
    scores = adapter.evaluate(shapes)
    assert 0.0 <= scores["mIoU"] <= 1.0 and 0.0 <= scores["pixel_accuracy"] <= 1.0 and scores["images"] == 8
    assert scores["labels"] == ["background", *adapter.labels] and set(scores["per_class"]) == set(scores["labels"])
    assert all(row["IoU"] is None or 0.0 <= row["IoU"] <= 1.0 for row in scores["per_class"].values())
    known = [row["IoU"] for row in scores["per_class"].values() if row["IoU"] is not None]
    assert scores["mIoU"] == pytest.approx(sum(known) / len(known))


def test_a_detector_evaluates_with_map_precision_and_recall_per_class(shapes: Path, tmp_path: Path) -> None:
    trainer = yolo.UltralyticsYolo("yolov8n", configuration={"imgsz": 64, "batch": 16, "workers": 0, "mosaic": 0.0, "warmup_epochs": 0.0,
                                                             "epochs": 1})
    trainer.train(shapes, tmp_path / "train", **trainer.configuration)
    trainer.save(tmp_path / "model")
    adapter = yolo.UltralyticsYolo("yolov8n")
    adapter.load(tmp_path / "model")
    scores = adapter.evaluate(shapes, output_path=tmp_path / "evaluation")
    assert {"mAP50", "mAP50-95", "precision", "recall"} <= set(scores) and scores["labels"] == adapter.labels
    assert all(0.0 <= scores[key] <= 1.0 for key in ("mAP50", "mAP50-95", "precision", "recall"))
    assert set(scores["per_class"]) <= set(adapter.labels)
    assert all(set(row) == {"precision", "recall", "mAP50", "mAP50-95"} for row in scores["per_class"].values())


TEXT_OPTIONS = {"max_steps": 6, "eval_steps": 3, "save_steps": 6, "batch_size": 16, "vocab_size": 300, "max_length": 32}


def test_a_text_classifier_evaluates_with_accuracy_and_macro_f1(tmp_path: Path) -> None:
    data = Path(write_text(tmp_path / "text", train_examples=80, validation_examples=20)["path"])
    trainer = TextClassification("bert-tiny", configuration=TEXT_OPTIONS)
    trainer.train(data, tmp_path / "out", **trainer.configuration)
    trainer.save(tmp_path / "model")
    adapter = TextClassification("bert-tiny")
    adapter.load(tmp_path / "model")
    scores = adapter.evaluate(data)
    assert_classification(scores, adapter.labels, 20)
    assert scores["examples"] == 20 and 0.0 <= scores["f1"] <= 1.0
    [prediction] = adapter.predict(["The final was won today ."], top_k=2)
    assert prediction["label"] in adapter.labels and [s["label"] for s in prediction["scores"]][0] == prediction["label"]


def test_a_token_classifier_evaluates_with_entity_precision_recall_and_f1(tmp_path: Path) -> None:
    data = Path(write_ner(tmp_path / "ner", train_examples=60, validation_examples=15)["path"])
    trainer = TokenClassification("bert-tiny-ner", configuration={**TEXT_OPTIONS, "labels": ["PER", "LOC"]})
    trainer.train(data, tmp_path / "out", **trainer.configuration)
    trainer.save(tmp_path / "model")
    adapter = TokenClassification("bert-tiny-ner")
    adapter.load(tmp_path / "model")
    scores = adapter.evaluate(data, subset="train")
    assert scores["examples"] == 60 and scores["labels"] == ["PER", "LOC"]
    assert all(0.0 <= scores[key] <= 1.0 for key in ("precision", "recall", "f1"))
    assert set(scores["per_entity"]) <= {"PER", "LOC"}
