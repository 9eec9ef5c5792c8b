"""Semantic segmentation with every segmentation model torchvision ships, trained from scratch.

The data set is an image-mask directory (see :mod:`trainfaas.adapters.masks`; the bundled "shapes" sample
is one). Images are converted to RGB and resized to a square of ``input_size`` pixels, masks with
nearest-neighbour sampling. Pixels are standardised with per-channel statistics of the training
subset, saved with the model so that prediction sees the inputs training saw. Class 0 is
background; ``labels[i]`` is class ``i + 1``; mask value 255 is ignored by the loss and the scores.

Training counts optimizer steps. Every ``eval_every_steps`` (by default once an epoch) it scores
the validation subset (loss, mIoU and pixel accuracy from a confusion matrix) and every
``checkpoint_every_steps`` (by default at every evaluation) it writes
``<output>/checkpoints/last.pt``; ``best.pt`` holds the state with the best validation mIoU so
far. Both hold the whole training state, so either can be resumed. The shuffle order is seeded per
epoch and the augmentation per step, so a resumed run takes the same batches as an uninterrupted
one. A stop request is honoured between steps and ends with a checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field, ValidationInfo, field_validator
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import models as tv_models
from torchvision.models import segmentation as tv_segmentation
from trainfaas.adapters.base import ModelAdapter, Options
from trainfaas.adapters.images import to_pil_image
from trainfaas.adapters.masks import IGNORE_VALUE, read_image_mask, select_labels, value_map
from trainfaas.adapters.torch_support import batch_starts, float_tensor, save_atomically, training_device
from trainfaas.services.core.errors import AdapterError, ConfigError, DatasetError

CHECKPOINT_FORMAT = 1
MODEL_FILE = "model.pt"
PRELOAD_LIMIT_BYTES = 2 * 1024**3
DECODE_BATCH_IMAGES = 64
AUX_LOSS_WEIGHT = 0.5  # torchvision's segmentation reference recipe
POLY_POWER = 0.9
STEP_MILESTONES = (0.7, 0.9)  # fractions of training after which the "step" schedule divides by 10

ARCHITECTURES: tuple[str, ...] = tuple(sorted(tv_models.list_models(module=tv_segmentation)))
WITHOUT_AUX_HEAD: frozenset[str] = frozenset(name for name in ARCHITECTURES if name.startswith("lraspp"))


class SegmentationOptions(Options):
    """Options of torchvision semantic segmentation training.

    The defaults suit the bundled shapes sample (240 training images of 128 pixels, trained at 64)
    with lraspp_mobilenet_v3_large: 900 steps of 8 images that reach a validation mIoU of about 0.5
    (background included) and a pixel accuracy of 0.95. Each step costs about 0.06 s on two idle
    CPU cores. Larger images want a larger ``input_size``: the mobilenet models see a 1/16 grid.
    """

    epochs: int = Field(30, ge=1, le=10000, description="Passes over the training subset (unless max_steps is set).")
    max_steps: int | None = Field(
        None, ge=1, le=10_000_000, description="Optimizer steps to train for; when set it replaces epochs."
    )
    batch_size: int = Field(8, ge=1, le=1024, description="Images per optimizer step.")
    learning_rate: float = Field(
        0.006, gt=0, le=10, description="Peak learning rate, reached after warmup_steps and then lowered by lr_schedule."
    )
    optimizer: Literal["sgd", "adam", "adamw"] = Field(
        "adamw", description="sgd (with Nesterov momentum), adam, or adamw (decoupled weight decay)."
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum of sgd; for adam and adamw, the first moment's decay rate (beta1).")
    weight_decay: float = Field(1e-4, ge=0, le=1, description="L2 penalty for sgd and adam; decoupled weight decay for adamw.")
    lr_schedule: Literal["poly", "cosine", "step"] = Field(
        "poly",
        description=(
            "How the learning rate falls after warm-up: poly ((1 - progress) ** 0.9, the usual segmentation"
            " schedule), cosine (to zero), or step (divided by 10 at 70% and again at 90% of the steps)."
        ),
    )
    warmup_steps: int = Field(20, ge=0, le=1_000_000, description="Steps over which the learning rate rises linearly to its peak.")
    input_size: int = Field(
        64, ge=32, le=2048, description="Side in pixels of the square every image and mask is resized to."
    )
    horizontal_flip: bool = Field(True, description="Mirror each training image (and its mask) with probability 1/2.")
    random_scale_min: float = Field(
        1.0,
        ge=0.25,
        le=4,
        description=(
            "Smallest random zoom of a training image before it is cropped (zoom > 1) or padded with ignored"
            " pixels (zoom < 1) back to input_size. Off by default (both 1): short runs from scratch learn faster"
            " without it; larger data sets and longer runs gain from a range such as 0.5 to 2."
        ),
    )
    random_scale_max: float = Field(1.0, ge=0.25, le=4, description="Largest random zoom of a training image; at least random_scale_min.")
    aux_loss: bool | None = Field(
        None,
        description=(
            "Train the auxiliary head on an earlier backbone stage too (weight 0.5), as torchvision's reference"
            " recipe does for fcn and deeplabv3. None or false: no auxiliary head. lraspp models have none."
        ),
    )
    batch_norm_momentum: float = Field(
        0.1,
        gt=0,
        le=1,
        description=(
            "Momentum of every BatchNorm layer's running statistics (PyTorch's default). torchvision's"
            " mobilenet_v3 backbones use 0.01, tuned for long ImageNet runs: in a short run from scratch their"
            " running statistics lag far behind the weights and evaluation suffers."
        ),
    )
    eval_every_steps: int | None = Field(
        None, ge=1, le=10_000_000, description="Score the validation subset every this many steps; None: at the end of every epoch."
    )
    checkpoint_every_steps: int | None = Field(
        None, ge=1, le=10_000_000, description="Write checkpoints/last.pt every this many steps; None: at every evaluation."
    )
    max_hours: float | None = Field(
        None, gt=0, le=10000, description="Wall-clock budget: once spent, training evaluates, checkpoints and ends early."
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of weight initialisation, shuffling and augmentation.")
    labels: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None,
        min_length=1,
        description=(
            "Train on these labels of the data set only (numbered in the data set's order); pixels of the others"
            " become background. None: all labels."
        ),
    )
    include_negatives: bool = Field(
        True,
        description=(
            "Keep training images with no pixel of a chosen label. Validation always keeps every image, so"
            " that false positives on such images count."
        ),
    )
    num_workers: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "Worker processes that decode images; 0 decodes in the training process. Data sets that fit in"
            " memory are decoded only once, so this matters mostly for large ones."
        ),
    )

    @field_validator("random_scale_max")
    @classmethod
    def _at_least_the_minimum(cls, value: float, info: ValidationInfo) -> float:
        if value < info.data.get("random_scale_min", value):
            raise ValueError("must be at least random_scale_min")
        return value


# ---- data ---------------------------------------------------------------------------------------


def _resized_pair(image_path: Path, mask_path: Path, size: int, table: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 image [3, size, size] and uint8 class mask [size, size] (values mapped by ``table``)."""
    with Image.open(image_path) as image:
        pixels = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    with Image.open(mask_path) as mask:
        values = np.asarray(mask.resize((size, size), Image.Resampling.NEAREST), dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous(), torch.from_numpy(table[values])


class _PairFiles(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """(image, mask) files decoded on demand: a map-style dataset a DataLoader can split over workers."""

    def __init__(self, pairs: list[tuple[Path, Path]], size: int, table: list[int]) -> None:
        self.pairs, self.size, self.table = pairs, size, np.asarray(table, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _resized_pair(*self.pairs[index], self.size, self.table)


Batch = tuple[torch.Tensor, torch.Tensor]
"""uint8 images [N, 3, H, W] and uint8 class masks [N, H, W], on the training device."""






class _Subset:
    """A subset's images and masks, decoded once into memory when they fit, else on every pass."""

    def __init__(self, files: _PairFiles, device: torch.device, num_workers: int, preload: bool) -> None:
        self.files, self.device, self.num_workers = files, device, num_workers
        self.images: torch.Tensor | None = None
        self.masks: torch.Tensor | None = None
        if preload:
            decoded = list(self._decode(torch.arange(len(files)), DECODE_BATCH_IMAGES))
            self.images = torch.cat([images for images, _ in decoded]).to(device)
            self.masks = torch.cat([masks for _, masks in decoded]).to(device)

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, order: torch.Tensor, batch_size: int) -> Iterator[Batch]:
        loader: DataLoader[Batch] = DataLoader(
            self.files, batch_size=batch_size, sampler=order.tolist(), num_workers=self.num_workers
        )
        yield from loader

    def batches(self, batch_size: int, order: torch.Tensor | None = None, first_batch: int = 0) -> Iterator[Batch]:
        """Yield batches in ``order`` (default: file order), starting at batch number ``first_batch``;
        a lone trailing image is left out (see trainfaas.adapters.torch_support.is_lone_trailing_sample)."""
        order = torch.arange(len(self)) if order is None else order
        starts = batch_starts(len(order), batch_size)[first_batch:]
        if not starts:
            return
        order = order[starts[0] : starts[-1] + batch_size]
        if self.images is not None and self.masks is not None:
            index = order.to(self.device)
            for start in range(0, len(index), batch_size):
                yield self.images[index[start : start + batch_size]], self.masks[index[start : start + batch_size]]
            return
        for images, masks in self._decode(order, batch_size):
            yield images.to(self.device, non_blocking=True), masks.to(self.device, non_blocking=True)


def _has_chosen_label(mask_path: Path, table: list[int]) -> bool:
    with Image.open(mask_path) as mask:
        return any(0 < table[value] < IGNORE_VALUE for _, value in mask.getcolors(256) or [])


def _channel_statistics(subset: _Subset) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (0..1 scale) of the training images."""
    total = torch.zeros(3, dtype=torch.float64)
    total_squares = torch.zeros(3, dtype=torch.float64)
    pixels = 0
    for images, _ in subset.batches(DECODE_BATCH_IMAGES):
        values = images.double().div_(255.0).transpose(0, 1).reshape(3, -1).cpu()
        total += values.sum(dim=1)
        total_squares += values.square().sum(dim=1)
        pixels += values.shape[1]
    mean = total / pixels
    # A constant channel would divide by zero; a floor keeps it at a harmless scale.
    std = (total_squares / pixels - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def _to_model_input(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, 3, H, W] → standardised float images."""
    return (images.float().div_(255.0) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def _augment(images: torch.Tensor, masks: torch.Tensor, options: SegmentationOptions, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flips and zooms of standardised images [N, 3, S, S] and long masks [N, S, S].

    A zoom above 1 is cropped back to S at a random place; below 1 it is padded with zeros
    (the mean pixel) and ignored mask pixels. Random draws come from ``generator`` only.
    """
    size = images.shape[-1]
    flips = torch.rand(len(images), generator=generator) < 0.5 if options.horizontal_flip else torch.zeros(len(images), dtype=torch.bool)
    scales = options.random_scale_min + torch.rand(len(images), generator=generator) * (options.random_scale_max - options.random_scale_min)
    corners = torch.rand(len(images), 2, generator=generator)
    out_images, out_masks = [], []
    for image, mask, flip, scale, corner in zip(images, masks, flips.tolist(), scales.tolist(), corners.tolist(), strict=True):
        if flip:
            image, mask = image.flip(-1), mask.flip(-1)
        side = max(round(size * scale), 8)
        if side != size:
            image = F.interpolate(image[None], size=(side, side), mode="bilinear", align_corners=False)[0]
            mask = F.interpolate(mask[None, None].float(), size=(side, side), mode="nearest")[0, 0].long()
            image, mask = _crop_or_pad(image, mask, size, corner)
        out_images.append(image)
        out_masks.append(mask)
    return torch.stack(out_images), torch.stack(out_masks)


def _crop_or_pad(image: torch.Tensor, mask: torch.Tensor, size: int, corner: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    side = image.shape[-1]
    top, left = (int(fraction * abs(side - size)) for fraction in corner)
    if side > size:
        return image[:, top : top + size, left : left + size], mask[top : top + size, left : left + size]
    padded_image = image.new_zeros(3, size, size)
    padded_mask = mask.new_full((size, size), IGNORE_VALUE)
    padded_image[:, top : top + side, left : left + side] = image
    padded_mask[top : top + side, left : left + side] = mask
    return padded_image, padded_mask


# ---- model, optimizer, schedule ---------------------------------------------------------------


def set_batch_norm_momentum(model: nn.Module, momentum: float) -> nn.Module:
    """Set the running-statistics momentum of every BatchNorm layer of ``model``; returns ``model``."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum
    return model


def build_model(architecture: str, num_classes: int, aux_loss: bool | None = None) -> nn.Module:
    """A randomly initialised ``architecture`` (backbone too) with ``num_classes`` output classes.

    Raises AdapterError for an architecture torchvision lacks and ConfigError naming ``aux_loss``
    when an auxiliary head is asked of a model that has none.
    """
    if architecture not in ARCHITECTURES:
        raise AdapterError(f"torchvision has no segmentation model {architecture!r}", {"architecture": "unknown to torchvision"})
    if architecture in WITHOUT_AUX_HEAD:
        if aux_loss:
            raise ConfigError(f"{architecture} has no auxiliary head", {"aux_loss": f"must be false or null for {architecture}"})
        return tv_models.get_model(architecture, weights=None, weights_backbone=None, num_classes=num_classes)
    return tv_models.get_model(architecture, weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=bool(aux_loss))


def _make_optimizer(model: nn.Module, options: SegmentationOptions) -> torch.optim.Optimizer:
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if options.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=options.learning_rate, momentum=options.momentum, nesterov=options.momentum > 0, weight_decay=options.weight_decay
        )
    optimizer_class = torch.optim.AdamW if options.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(parameters, lr=options.learning_rate, betas=(options.momentum, 0.999), weight_decay=options.weight_decay)


def learning_rate_at(step: int, total_steps: int, options: SegmentationOptions) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warm-up, then ``lr_schedule``."""
    peak, warmup = options.learning_rate, min(options.warmup_steps, max(total_steps - 1, 0))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
    if options.lr_schedule == "poly":
        return peak * (1.0 - progress) ** POLY_POWER
    if options.lr_schedule == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak * 0.1 ** sum(progress >= milestone for milestone in STEP_MILESTONES)


def _loss(outputs: dict[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    loss = F.cross_entropy(outputs["out"], masks, ignore_index=IGNORE_VALUE)
    if "aux" in outputs:
        loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(outputs["aux"], masks, ignore_index=IGNORE_VALUE)
    return loss




# ---- scores -------------------------------------------------------------------------------------


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, classes: int) -> torch.Tensor:
    """[classes, classes] pixel counts, rows the true class, columns the predicted one; 255 skipped."""
    valid = targets != IGNORE_VALUE
    index = targets[valid].long() * classes + predictions[valid].long()
    return torch.bincount(index, minlength=classes * classes).reshape(classes, classes).cpu()


def scores(matrix: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Per-class IoU (NaN for a class neither present nor predicted), mIoU over the others, pixel accuracy."""
    matrix = matrix.double()
    hits = matrix.diag()
    union = matrix.sum(dim=0) + matrix.sum(dim=1) - hits
    iou = torch.where(union > 0, hits / union.clamp_min(1), torch.full_like(hits, math.nan))
    mean_iou = float(iou.nanmean()) if bool((union > 0).any()) else 0.0
    return iou, mean_iou, float(hits.sum() / matrix.sum().clamp_min(1))


# ---- training ------------------------------------------------------------------------------------


@dataclass
class _Run:
    """The state of one training run: what the loop needs and what a checkpoint keeps."""

    architecture: str
    labels: list[str]
    options: SegmentationOptions
    model: nn.Module
    optimizer: torch.optim.Optimizer
    mean: torch.Tensor
    std: torch.Tensor
    steps_per_epoch: int
    step: int = 0
    best_miou: float = -1.0
    metrics: dict[str, float] | None = None

    @property
    def total_steps(self) -> int:
        return self.options.max_steps or self.steps_per_epoch * self.options.epochs

    @property
    def eval_interval(self) -> int:
        return self.options.eval_every_steps or self.steps_per_epoch

    @property
    def checkpoint_interval(self) -> int:
        return self.options.checkpoint_every_steps or self.eval_interval

    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "architecture": self.architecture,
            "labels": self.labels,
            "input_size": self.options.input_size,
            "aux_loss": _has_aux_head(self.model),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "step": self.step,
            "best_miou": self.best_miou,
            "metrics": dict(self.metrics or {}),
            "options": self.options.model_dump(mode="json"),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }


def _has_aux_head(model: nn.Module) -> bool:
    return getattr(model, "aux_classifier", None) is not None






class TorchvisionSegmentation(ModelAdapter):
    """Trains torchvision's semantic segmentation models from random weights on an image-mask data set."""

    architectures: ClassVar[tuple[str, ...]] = ARCHITECTURES
    task: ClassVar[str] = "semantic-segmentation"
    dataset_format: ClassVar[str | None] = "image-mask"
    Options: ClassVar[type[Options]] = SegmentationOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: nn.Module | None = None
        self.input_size = 0
        # Per-channel pixel statistics (0..1 scale) the model's inputs are standardised with.
        self.mean: list[float] = []
        self.std: list[float] = []

    @classmethod
    def check_dataset(cls, path: Path, configuration: dict[str, Any]) -> list[str]:
        return select_labels(read_image_mask(Path(path)).labels, configuration.get("labels"))

    @classmethod
    def reference_model(cls, architecture: str) -> nn.Module:
        """The 21-class (Pascal VOC) model, with the auxiliary head torchvision's published weights
        carry (fcn and deeplabv3 have one, lraspp none), so that the parameter count matches them."""
        return build_model(architecture, 21, aux_loss=architecture not in WITHOUT_AUX_HEAD)

    def train(self, data_path: Path | None, output_path: Path, **configuration: Any) -> dict[str, float]:
        """Train into ``output_path``; return the last evaluation's metrics, steps and epochs.

        Final metrics: ``train_loss``, ``val_loss``, ``val_mIoU``, ``val_pixel_accuracy``,
        ``val_IoU_<label>`` per class (background included; NaN-free: a class absent from the
        validation subset and never predicted is left out), ``steps``, ``epochs`` and, when training
        ended early, ``stopped`` (a stop request) or ``time_limited`` (max_hours). Raises
        DatasetError for a missing or malformed data set, ConfigError for an impossible option.
        """
        options = SegmentationOptions.model_validate({**self.configuration, **configuration})
        if data_path is None:
            raise DatasetError("semantic segmentation needs an image-mask data set", {"dataset": "missing"})
        dataset = read_image_mask(Path(data_path))
        labels = select_labels(dataset.labels, options.labels)
        table = value_map(dataset.labels, labels)
        device = training_device()
        torch.manual_seed(options.seed)
        model = build_model(self.architecture, len(labels) + 1, options.aux_loss)
        model = set_batch_norm_momentum(model, options.batch_norm_momentum).to(device)
        subsets = self._open_subsets(dataset.pairs, table, options, device)
        run = self._start_run(model, labels, options, subsets["train"], device)
        self.labels, self.model, self.input_size = labels, model, options.input_size
        self.mean, self.std = run.mean.tolist(), run.std.tolist()
        return self._train_steps(run, subsets, Path(output_path) / "checkpoints")

    def _open_subsets(
        self, pairs: dict[str, list[tuple[Path, Path]]], table: list[int], options: SegmentationOptions, device: torch.device
    ) -> dict[str, _Subset]:
        train_pairs = pairs["train"]
        if not options.include_negatives:
            train_pairs = [pair for pair in train_pairs if _has_chosen_label(pair[1], table)]
            self.context.log(f"include_negatives=false: kept {len(train_pairs)} of {len(pairs['train'])} training images")
            if len(train_pairs) < 2:
                raise DatasetError(
                    f"only {len(train_pairs)} training images show a chosen label; training needs at least 2",
                    {"configuration.include_negatives": "set to true, or choose other labels"},
                )
        decoded_bytes = (len(train_pairs) + len(pairs["validation"])) * 4 * options.input_size**2
        preload = decoded_bytes <= PRELOAD_LIMIT_BYTES
        return {
            "train": _Subset(_PairFiles(train_pairs, options.input_size, table), device, options.num_workers, preload),
            "validation": _Subset(_PairFiles(pairs["validation"], options.input_size, table), device, options.num_workers, preload),
        }

    def _start_run(
        self, model: nn.Module, labels: list[str], options: SegmentationOptions, train: _Subset, device: torch.device
    ) -> _Run:
        """A fresh run, the one saved in ``context.resume_checkpoint``, or one fine-tuning ``context.base_model``."""
        optimizer = _make_optimizer(model, options)
        steps_per_epoch = len(batch_starts(len(train), options.batch_size))
        if steps_per_epoch == 0:
            raise DatasetError("training needs at least 2 images", {"dataset": "the train subset has a single image"})
        resume = self.context.resume_checkpoint
        if resume is not None and Path(resume).exists():
            saved = torch.load(resume, map_location=device, weights_only=True)
            self._check_same_model(saved, labels, f"checkpoint {resume}")
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            run = _Run(self.architecture, labels, options, model, optimizer, float_tensor(saved["mean"], device),
                       float_tensor(saved["std"], device), steps_per_epoch, int(saved["step"]), float(saved["best_miou"]),
                       dict(saved.get("metrics") or {}))
            self.context.log(f"resumed from checkpoint at step {run.step}")
            return run
        base = self.context.base_model
        if base is not None:
            mean, std = self._load_base_model(model, Path(base), labels, device)
        else:
            mean, std = _channel_statistics(train)
        return _Run(self.architecture, labels, options, model, optimizer, float_tensor(mean, device), float_tensor(std, device), steps_per_epoch)

    def _check_same_model(self, saved: dict[str, Any], labels: list[str] | None, what: str) -> None:
        if saved.get("architecture") != self.architecture or (labels is not None and saved.get("labels") != labels):
            raise AdapterError(
                f"{what} is of {saved.get('architecture')} with labels {saved.get('labels')},"
                f" not of {self.architecture} with labels {labels}",
                {"resume_checkpoint" if what.startswith("checkpoint") else "base_model": "another model's weights"},
            )

    def _load_base_model(self, model: nn.Module, base: Path, labels: list[str], device: torch.device) -> tuple[list[float], list[float]]:
        """Start from a saved model's weights and pixel statistics. Layers whose shape differs (the
        class layers, when the labels differ) keep their fresh initialisation."""
        saved = torch.load(base / MODEL_FILE, map_location=device, weights_only=True)
        self._check_same_model(saved, None, f"base model {base}")
        own = model.state_dict()
        fitting = {key: value for key, value in saved["model"].items() if key in own and own[key].shape == value.shape}
        model.load_state_dict(fitting, strict=False)
        fresh = sorted({key.rsplit(".", 1)[0] for key in own if key not in fitting})
        self.context.log(f"fine-tuning from {base}" + (f"; freshly initialised: {', '.join(fresh)}" if fresh else ""))
        return list(saved["mean"]), list(saved["std"])

    def _train_steps(self, run: _Run, subsets: dict[str, _Subset], checkpoints: Path) -> dict[str, float]:
        """Run optimizer steps from ``run.step`` to the end, evaluating and checkpointing on schedule."""
        started_s = time.monotonic()
        losses: list[float] = []
        while run.step < run.total_steps:
            epoch, first_batch = divmod(run.step, run.steps_per_epoch)
            order = torch.randperm(len(subsets["train"]), generator=torch.Generator().manual_seed(run.options.seed * 1_000_003 + epoch))
            for images, masks in subsets["train"].batches(run.options.batch_size, order, first_batch):
                if self.context.should_stop():
                    self._save(run, checkpoints / "last.pt")
                    return self._final(run, stopped=1.0)
                losses.append(self._step(run, images, masks))
                evaluated = run.step % run.eval_interval == 0 or run.step == run.total_steps
                if evaluated:
                    self._evaluate(run, subsets["validation"], losses, checkpoints)
                    losses = []
                if run.options.max_hours is not None and time.monotonic() - started_s > run.options.max_hours * 3600:
                    if not evaluated:
                        self._evaluate(run, subsets["validation"], losses, checkpoints)
                    self._save(run, checkpoints / "last.pt")
                    return self._final(run, time_limited=1.0)
                if run.step % run.checkpoint_interval == 0 or run.step == run.total_steps:
                    self._save(run, checkpoints / "last.pt")
                if run.step >= run.total_steps:
                    break
        return self._final(run)

    def _step(self, run: _Run, images: torch.Tensor, masks: torch.Tensor) -> float:
        """One optimizer step; returns its loss. Randomness is seeded by the step, so resumes repeat it."""
        run.model.train()
        seed = run.options.seed * 1_000_003 + run.step
        torch.manual_seed(seed)  # dropout
        inputs, targets = _augment(_to_model_input(images, run.mean, run.std), masks.long(), run.options, torch.Generator().manual_seed(seed))
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate_at(run.step, run.total_steps, run.options)
        loss = _loss(run.model(inputs), targets)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.step += 1
        return float(loss.detach())

    def _evaluate(self, run: _Run, subset: _Subset, losses: list[float], checkpoints: Path) -> None:
        """Score the validation subset, report the figures, and write best.pt when mIoU improved."""
        classes = len(run.labels) + 1
        matrix = torch.zeros(classes, classes, dtype=torch.long)
        loss_sum, pixels = 0.0, 0
        run.model.eval()
        with torch.no_grad():
            for images, masks in subset.batches(max(run.options.batch_size, DECODE_BATCH_IMAGES)):
                logits = run.model(_to_model_input(images, run.mean, run.std))["out"]
                targets = masks.long()
                loss_sum += float(F.cross_entropy(logits, targets, ignore_index=IGNORE_VALUE, reduction="sum"))
                pixels += int((targets != IGNORE_VALUE).sum())
                matrix += confusion_matrix(logits.argmax(dim=1), targets, classes)
        iou, mean_iou, accuracy = scores(matrix)
        run.metrics = {"val_loss": loss_sum / max(pixels, 1), "val_mIoU": mean_iou, "val_pixel_accuracy": accuracy}
        if losses:
            run.metrics["train_loss"] = sum(losses) / len(losses)
        for name, value in zip(["background", *run.labels], iou.tolist(), strict=True):
            if not math.isnan(value):
                run.metrics[f"val_IoU_{name}"] = value
        self._report(run)
        if mean_iou > run.best_miou:
            run.best_miou = mean_iou
            self._save(run, checkpoints / "best.pt")

    def _report(self, run: _Run) -> None:
        figures = run.metrics or {}
        for figure, legend, key in (("loss", "train", "train_loss"), ("loss", "val", "val_loss"),
                                    ("mIoU", "val", "val_mIoU"), ("pixel_accuracy", "val", "val_pixel_accuracy")):
            if key in figures:
                self.context.metric(figure, legend, run.step, figures[key])
        epoch = run.step / run.steps_per_epoch
        self.context.progress(
            100.0 * run.step / run.total_steps,
            f"step {run.step}/{run.total_steps} (epoch {epoch:.1f}) val loss {figures['val_loss']:.4f}"
            f" val mIoU {figures['val_mIoU']:.4f} pixel accuracy {figures['val_pixel_accuracy']:.4f}",
        )

    def _save(self, run: _Run, path: Path) -> None:
        save_atomically(run.state(), path)
        self.context.checkpoint(path, step=run.step, metrics={k: v for k, v in (run.metrics or {}).items() if k.startswith(("val_", "train_"))})

    def _final(self, run: _Run, **flags: float) -> dict[str, float]:
        return {**(run.metrics or {}), "steps": float(run.step), "epochs": run.step / run.steps_per_epoch, **flags}

    # ---- saved models and prediction ----------------------------------------------------------

    def save(self, local_path: Path, **kwargs: Any) -> None:
        """Write ``local_path/model.pt``: weights, labels, architecture, input size and pixel statistics."""
        model = self._require_model()
        payload = {
            "format": CHECKPOINT_FORMAT,
            "architecture": self.architecture,
            "labels": self.labels,
            "input_size": self.input_size,
            "aux_loss": _has_aux_head(model),
            "mean": list(self.mean),
            "std": list(self.std),
            "model": model.state_dict(),
        }
        save_atomically(payload, Path(local_path) / MODEL_FILE)

    def load(self, local_path: Path, **kwargs: Any) -> None:
        """Read a model written by :meth:`save`; its architecture and labels replace this adapter's."""
        device = training_device()
        saved = torch.load(Path(local_path) / MODEL_FILE, map_location=device, weights_only=True)
        self.architecture, self.labels = saved["architecture"], list(saved["labels"])
        self.input_size, self.mean, self.std = int(saved["input_size"]), list(saved["mean"]), list(saved["std"])
        model = build_model(self.architecture, len(self.labels) + 1, bool(saved["aux_loss"]))
        model.load_state_dict(saved["model"])
        self.model = model.to(device).eval()

    def predict(self, batch: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
        """Segment PIL images or numpy arrays (H×W or H×W×C; uint8 0..255, or floats 0..1).

        Returns one ``{"mask": uint8 array H×W, "labels": [...]}`` per item, at the item's own
        size: mask value 0 is background and ``i + 1`` is ``self.labels[i]`` (the data set's
        convention); ``labels`` lists the labels with at least one pixel.
        """
        model = self._require_model()
        device = next(model.parameters()).device
        mean, std = float_tensor(self.mean, device), float_tensor(self.std, device)
        model.eval()
        results = []
        with torch.no_grad():
            for item in batch:
                image = to_pil_image(item, "segment").convert("RGB")
                pixels = np.asarray(image.resize((self.input_size, self.input_size), Image.Resampling.BILINEAR))
                tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].to(device)
                logits = model(_to_model_input(tensor, mean, std))["out"]
                logits = F.interpolate(logits, size=(image.height, image.width), mode="bilinear", align_corners=False)
                mask = logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
                present = sorted(int(value) for value in np.unique(mask) if value > 0)
                results.append({"mask": mask, "labels": [self.labels[value - 1] for value in present]})
        return results

    def _require_model(self) -> nn.Module:
        if self.model is None:
            raise AdapterError("no model yet: train or load one first", {"model": "not trained or loaded"})
        return self.model
