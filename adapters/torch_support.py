"""Pieces the torchvision adapters share: batching, seeding, the training device, atomic torch.save."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from trainfaas.services.core.files import atomic_write


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


def save_torch(payload: dict[str, Any], path: Path) -> None:
    """torch.save through a temporary file beside ``path``, so a crash never leaves half a checkpoint."""
    atomic_write(Path(path), lambda handle: torch.save(payload, handle))


def float_tensor(values: list[float], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device)


def training_device() -> torch.device:
    """CUDA when torch sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seeded(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def step_seed(seed: int, step: int) -> int:
    """The seed of one epoch's shuffle, or of one step's augmentation and dropout: a resumed run repeats an
    uninterrupted one because every draw depends on the option ``seed`` and the epoch or step alone."""
    return seed * 1_000_003 + step


def default_generators(device: torch.device) -> list[torch.Generator]:
    """The generators dropout and the like draw from on ``device``. Seeding them directly costs a few
    microseconds a step; torch.manual_seed visits every backend and costs a hundred times more."""
    generators = [torch.default_generator]
    if device.type == "cuda":
        generators.append(torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()])
    return generators


def synchronized_time(device: torch.device) -> float:
    """time.monotonic() once the device has done the work queued so far (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.monotonic()
