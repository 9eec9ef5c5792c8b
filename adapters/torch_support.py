"""Pieces the torchvision adapters share: batching, the training device, atomic checkpoint writes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def is_lone_trailing_sample(images: int, batch_size: int) -> bool:
    """A batch of one cannot pass a BatchNorm layer in training mode once its spatial size is 1x1
    (classification backbones, deeplabv3's ASPP after global pooling)."""
    return images == 1 and batch_size > 1


def batch_starts(images: int, batch_size: int) -> list[int]:
    """Where each training batch of ``images`` starts; a lone trailing image is left out."""
    starts = list(range(0, images, batch_size))
    if starts and is_lone_trailing_sample(images - starts[-1], batch_size):
        starts.pop()
    return starts


def save_atomically(payload: dict[str, Any], path: Path) -> None:
    """Write with torch.save through a temporary file, so a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".partial", delete=False) as partial:
        try:
            torch.save(payload, partial)
            partial.close()
            os.replace(partial.name, path)
        except BaseException:
            Path(partial.name).unlink(missing_ok=True)
            raise


def float_tensor(values: list[float], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device)


def training_device() -> torch.device:
    """CUDA when torch sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
