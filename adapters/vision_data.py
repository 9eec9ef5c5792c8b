"""The data side the torchvision adapters share: a subset decoded once or on every pass, pixel statistics
and standardisation.

A subset wraps a map-style dataset whose items are a uint8 image [3, H, W] and its target (a label
index for classification, a uint8 class mask [H, W] for segmentation). When the decoded training and
validation subsets fit in :data:`PRELOAD_LIMIT_BYTES` they are decoded once and kept as tensors on the
training device; otherwise a DataLoader with ``num_workers`` worker processes decodes them on every pass.
Either way the batches are the same.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from trainfaas.adapters.torch_support import batch_starts, seeded, step_seed

PRELOAD_LIMIT_BYTES = 2 * 1024**3
STATISTICS_IMAGES = 2048

Batch = tuple[torch.Tensor, torch.Tensor]
"""uint8 images [N, 3, H, W] and their targets [N, ...], on the training device."""


class Subset:
    """A subset's images and targets, decoded once into tensors on the training device when they fit, else on every pass."""

    def __init__(self, dataset: Dataset[Batch], device: torch.device, num_workers: int, preload: bool, decode_batch: int) -> None:
        self.dataset, self.device, self.num_workers, self.decode_batch = dataset, device, num_workers, decode_batch
        self.images: torch.Tensor | None = None
        self.targets: torch.Tensor | None = None
        if preload:
            decoded = list(self._decode(torch.arange(len(self)), decode_batch))
            self.images = torch.cat([images for images, _ in decoded]).to(device)
            self.targets = torch.cat([targets for _, targets in decoded]).to(device)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _decode(self, order: torch.Tensor, batch_size: int) -> Iterator[Batch]:
        loader: DataLoader[Batch] = DataLoader(
            self.dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        yield from loader

    def batches(self, batch_size: int, order: torch.Tensor | None = None, first_batch: int = 0) -> Iterator[Batch]:
        """Yield batches in ``order`` (default: file order) from batch number ``first_batch`` on;
        a lone trailing image is left out (see trainfaas.adapters.torch_support.is_lone_trailing_sample)."""
        order = torch.arange(len(self)) if order is None else order
        starts = batch_starts(len(order), batch_size)[first_batch:]
        if not starts:
            return
        order = order[starts[0] : starts[-1] + batch_size]
        if self.images is not None and self.targets is not None:
            index = order.to(self.device)
            for start in range(0, len(index), batch_size):
                part = index[start : start + batch_size]
                yield self.images[part], self.targets[part]
            return
        for images, targets in self._decode(order, batch_size):
            yield images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)


def open_subsets(datasets: dict[str, Dataset[Batch]], bytes_per_image: int, device: torch.device, num_workers: int,
                 decode_batch: int) -> dict[str, Subset]:
    """The subsets of ``datasets``, all preloaded when they fit in PRELOAD_LIMIT_BYTES together, else all streamed."""
    preload = sum(len(dataset) for dataset in datasets.values()) * bytes_per_image <= PRELOAD_LIMIT_BYTES  # type: ignore[arg-type]
    return {name: Subset(dataset, device, num_workers, preload, decode_batch) for name, dataset in datasets.items()}


def channel_statistics(subset: Subset, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (0..1 scale) of up to STATISTICS_IMAGES images of ``subset``."""
    total = torch.zeros(3, dtype=torch.float64)
    total_squares = torch.zeros(3, dtype=torch.float64)
    pixels = 0
    order = torch.randperm(len(subset), generator=seeded(step_seed(seed, -1)))[:STATISTICS_IMAGES]
    for images, _ in subset.batches(subset.decode_batch, order):
        values = images.double().div_(255.0).transpose(0, 1).reshape(3, -1).cpu()
        total += values.sum(dim=1)
        total_squares += values.square().sum(dim=1)
        pixels += values.shape[1]
    mean = total / max(pixels, 1)
    # A constant channel would divide by zero; a floor keeps it at a harmless scale.
    std = (total_squares / max(pixels, 1) - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


Standardisation = tuple[torch.Tensor, torch.Tensor]
"""The scale and shift [1, 3, 1, 1] that standardise uint8 pixels."""


def standardisation(mean: torch.Tensor, std: torch.Tensor) -> Standardisation:
    """The scale and shift [1, 3, 1, 1] that standardise uint8 pixels with ``mean`` and ``std`` (0..1 scale)."""
    return (1.0 / (255.0 * std)).view(1, -1, 1, 1), (-mean / std).view(1, -1, 1, 1)


def to_model_input(images: torch.Tensor, standardise: Standardisation) -> torch.Tensor:
    """uint8 images [N, 3, H, W] → standardised float images, (pixel / 255 - mean) / std, in two in-place passes."""
    scale, shift = standardise
    return images.float().mul_(scale).add_(shift)
