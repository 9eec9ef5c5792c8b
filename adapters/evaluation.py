"""Scores the built-in adapters' ``evaluate`` returns, from true and predicted class indexes."""
from __future__ import annotations

from typing import Any

import numpy as np

from trainfaas.services.core.errors import ConfigError

SUBSETS: tuple[str, ...] = ("train", "validation")


def subset_of(kwargs: dict[str, Any]) -> str:
    """The subset an ``evaluate`` call names: ``validation`` (the default) or ``train``."""
    subset = str(kwargs.get("subset") or "validation")
    if subset not in SUBSETS:
        raise ConfigError(f"unknown subset {subset!r}", {"subset": f"one of: {', '.join(SUBSETS)}"})
    return subset


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """[classes, classes] counts, rows the true class, columns the predicted one."""
    index = np.asarray(truth, dtype=np.int64) * classes + np.asarray(predicted, dtype=np.int64)
    return np.bincount(index, minlength=classes * classes).reshape(classes, classes)


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    return np.divide(top, bottom, out=np.zeros_like(top, dtype=np.float64), where=bottom > 0)


def classification_scores(truth: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro precision, recall and F1, the same per class (with its support), and the
    confusion matrix (rows true labels, columns predicted, in the order of ``labels``). A class
    with no image and no prediction scores 0 and is left out of the macro averages."""
    matrix = confusion(truth, predicted, len(labels))
    hits = np.diag(matrix).astype(np.float64)
    support, chosen = matrix.sum(axis=1), matrix.sum(axis=0)
    precision, recall = _ratio(hits, chosen.astype(np.float64)), _ratio(hits, support.astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    seen = (support + chosen) > 0
    total = int(matrix.sum())

    def macro(values: np.ndarray) -> float:
        return float(values[seen].mean()) if seen.any() else 0.0

    return {
        "samples": total, "accuracy": float(hits.sum() / total) if total else 0.0,
        "precision": macro(precision), "recall": macro(recall), "f1": macro(f1),
        "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                              "support": int(support[i])} for i, label in enumerate(labels)},
        "labels": list(labels), "confusion_matrix": matrix.astype(int).tolist(),
    }
