"""Each built-in adapter's ``evaluate`` on a tiny model trained on a small generated data set, and
the scores it reports (trained the way each adapter's own tests train, in seconds on a CPU)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.adapter_support import first_images
from trainfaas.adapters import AdapterError, ConfigError, ModelAdapter, NullContext
from trainfaas.adapters import torchvision_classification as tc
from trainfaas.adapters.datasets import write_digits
from trainfaas.adapters.evaluation import classification_scores

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
