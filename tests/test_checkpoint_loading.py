"""No checkpoint or model file is unpickled: a file that would run code when unpickled is refused
by every adapter that loads one, and the code does not run (the marker it would create stays absent)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from trainfaas.adapters import AdapterError, NullContext, yolo
from trainfaas.adapters import torchvision_classification as tc


class Planted:
    """Unpickling it creates ``marker``: the stand-in for code a crafted checkpoint runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def plant(path: Path, marker: Path) -> Path:
    torch.save({"model": Planted(marker), "epoch": 1}, path)
    assert path.exists() and not marker.exists()
    return path


def test_a_yolo_checkpoint_that_would_run_code_is_refused_unread(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(AdapterError, match="without running code"):
        yolo._load_checkpoint(plant(tmp_path / "last.pt", marker))
    assert not marker.exists()


def test_a_classification_model_or_checkpoint_that_would_run_code_is_refused_unread(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "model").mkdir()
    plant(tmp_path / "model" / "model.pt", marker)
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        tc.TorchvisionClassification("resnet18", context=NullContext()).load(tmp_path / "model")
    assert not marker.exists()
